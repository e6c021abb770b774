"""Request dependencies shared by the routers, as type aliases (`SettingsDep`, `RegistryDep`, `RunsDep`,
`MetricsDep`, `ExportsDep`, `EvaluationsDep`). The objects behind them are built once, in `server.app.create_app`, and live on `app.state`;
routers never build or look up shared objects themselves."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from matelix.evaluation.jobs import EvaluationJobs
from matelix.export.jobs import ExportJobs
from matelix.inference.registry import ModelRegistry
from matelix.server.metrics import Metrics
from matelix.settings import Settings
from matelix.training.jobs import RunManager


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_runs(request: Request) -> RunManager:
    return request.app.state.runs


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_exports(request: Request) -> ExportJobs:
    return request.app.state.exports


def get_evaluations(request: Request) -> EvaluationJobs:
    return request.app.state.evaluations


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
RunsDep = Annotated[RunManager, Depends(get_runs)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ExportsDep = Annotated[ExportJobs, Depends(get_exports)]
EvaluationsDep = Annotated[EvaluationJobs, Depends(get_evaluations)]
