"""The worker's account of a failed run: a lost peer is named as such, whatever form torch.distributed gives it."""

import pytest
import torch.distributed as dist

from matelix.training.worker import failure_message

GLOO_RESET = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
              "[127.0.0.1]:4007: Connection reset by peer. This is typically caused by a remote worker hanging")


@pytest.mark.parametrize("exc", [
    RuntimeError(GLOO_RESET),
    RuntimeError("Connection closed by peer [127.0.0.1]:29500"),
    RuntimeError("recv: Connection reset by peer"),
    dist.DistError("store timed out"),
])
def test_a_lost_peer_is_named_and_the_original_error_kept(exc):
    message = failure_message(exc)
    assert message.startswith("another process or node of the run was lost (")
    assert str(exc) in message


def test_other_errors_are_reported_as_they_are():
    assert failure_message(ValueError("learning_rate must be positive")) == \
        "ValueError: learning_rate must be positive"
