"""Threaded dialog CSVs: conversations rebuilt from parent_id links, with broken links reported by row."""

from matelix.data import load_dataset, render_sample
from matelix.data.threads import MAX_HISTORY_MESSAGES, normalise_id

HEADER = "id,parent_id,system,Benutzer,Kontext,Assistentin\n"


def _load(tmp_path, body: str, mode: str = "auto"):
    path = tmp_path / "chat.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    return load_dataset(path, mode)


def test_every_answer_is_a_sample_with_its_real_history(tmp_path):
    loaded = _load(tmp_path, "1,,Sei nett.,Hallo,,Hi!\n2,1,,Wie geht's?,,Gut.\n3,1,,Und sonst?,,Alles klar.\n")
    assert loaded.format == "chat" and loaded.rows == 3 and not loaded.problems
    assert [s.row for s in loaded.samples] == [1, 2, 3]
    assert {s.group for s in loaded.samples} == {"1"}
    assert [m["content"] for m in loaded.samples[2].messages] == ["Sei nett.", "Hallo", "Hi!", "Und sonst?",
                                                                   "Alles klar."]


def test_two_turn_thread_with_system_prompt_renders_exactly(tmp_path):
    loaded = _load(tmp_path, "1,,Sei nett.,Hallo,,Hi!\n2,1,,Wie geht's?,,Gut.\n")
    assert render_sample(loaded.samples[1], None, "chat") == (
        "<|System|>\nSei nett.\n<|Benutzer|>\nHallo\n<|Assistentin|>\nHi!\n</s>\n"
        "<|Benutzer|>\nWie geht's?\n<|Assistentin|>\nGut.\n</s>\n")
    assert render_sample(loaded.samples[1], None, "dialogplus") == (
        "<|System|>\nSei nett.\n</s>\n<|Benutzer|>\nHallo\n</s>\n<|Assistentin|>\nHi!\n</s>\n"
        "<|Benutzer|>\nWie geht's?\n</s>\n<|Assistentin|>\nGut.\n</s>\n")


def test_kontext_goes_before_the_question_after_a_blank_line(tmp_path):
    loaded = _load(tmp_path, '1,,,Was steht da?,"Ein Text.",Ein Text.\n2,1,,,Nur Kontext,Ok.\n')
    assert loaded.samples[0].messages[0] == {"role": "user", "content": "Ein Text.\n\nWas steht da?"}
    assert loaded.samples[1].messages[-2] == {"role": "user", "content": "Nur Kontext"}


def test_float_ids_are_the_same_id(tmp_path):
    loaded = _load(tmp_path, "12,,,A,,B\n13.0,12.0,,C,,D\n14,13,,E,,F\n")
    assert not loaded.problems
    assert [m["content"] for m in loaded.samples[2].messages] == ["A", "B", "C", "D", "E", "F"]
    assert normalise_id(" 12.00 ") == "12" and normalise_id("012") == "012" and normalise_id("1.5") == "1.5"


def test_an_orphan_is_reported_and_starts_its_own_thread(tmp_path):
    loaded = _load(tmp_path, "1,,,A,,B\n2,99,,C,,D\n")
    assert [(p.row, p.severity) for p in loaded.problems] == [(2, "error")]
    assert "99" in loaded.problems[0].message
    assert loaded.samples[1].messages == [{"role": "user", "content": "C"}, {"role": "assistant", "content": "D"}]
    assert loaded.samples[1].group == "2"


def test_a_cycle_terminates_and_is_reported_with_its_rows(tmp_path):
    loaded = _load(tmp_path, "1,,,A,,B\n2,3,,C,,D\n3,2,,E,,F\n4,3,,G,,H\n5,5,,I,,J\n")
    assert [s.row for s in loaded.samples] == [1]
    by_row = {p.row: p.message for p in loaded.problems}
    assert sorted(by_row) == [2, 3, 4, 5]
    assert "cycle" in by_row[2] and "rows 2 -> 3 -> 2" in by_row[2]
    assert "leads into a parent_id cycle" in by_row[4]
    assert "rows 5 -> 5" in by_row[5]
    assert all(p.severity == "error" for p in loaded.problems)


def test_duplicate_ids_are_errors_and_replies_link_to_the_first(tmp_path):
    loaded = _load(tmp_path, "1,,,A,,B\n1,,,X,,Y\n2,1,,C,,D\n")
    assert [(p.row, p.severity) for p in loaded.problems] == [(2, "error")]
    assert [m["content"] for m in loaded.samples[2].messages] == ["A", "B", "C", "D"]


def test_system_comes_from_the_nearest_row_going_up(tmp_path):
    loaded = _load(tmp_path, "1,,Root-System,A,,B\n2,1,,C,,D\n3,2,Neu,E,,F\n4,3,,G,,H\n")
    assert [s.messages[0]["content"] for s in loaded.samples] == ["Root-System", "Root-System", "Neu", "Neu"]


def test_rows_without_answer_are_history_and_leaves_are_warned(tmp_path):
    loaded = _load(tmp_path, "1,,,Frage ohne Antwort,,\n2,1,,Nachfrage,,Antwort\n3,,,Offen,,\n")
    assert [s.row for s in loaded.samples] == [2]
    assert [m["role"] for m in loaded.samples[0].messages] == ["user", "user", "assistant"]
    assert [(p.row, p.severity) for p in loaded.problems] == [(3, "warning")]


def test_row_order_does_not_matter_and_deep_chains_stay_bounded(tmp_path):
    depth = MAX_HISTORY_MESSAGES + 50
    body = "".join(f"{i},{i - 1 if i > 1 else ''},,U{i},,A{i}\n" for i in range(depth, 0, -1))
    loaded = _load(tmp_path, body)
    assert len(loaded.samples) == depth
    deepest = max(loaded.samples, key=lambda s: int(s.messages[-1]["content"][1:]))
    assert len(deepest.messages) == MAX_HISTORY_MESSAGES and deepest.messages[-1]["content"] == f"A{depth}"
    assert [p.severity for p in loaded.problems] == ["warning"]


def test_dialogplus_mode_reads_the_same_threads(tmp_path):
    loaded = _load(tmp_path, "1,,,A,,B\n", "dialogplus")
    assert loaded.format == "dialogplus" and loaded.render_mode == "dialogplus" and len(loaded.samples) == 1


def _chain(rows: int) -> str:
    return "".join(f"{i},{i - 1 if i > 1 else ''},,U{i},,A{i}\n" for i in range(1, rows + 1))


def test_a_long_chain_shares_its_histories_instead_of_copying_them(tmp_path):
    """20,000 rows in one chain: every sample's history is its parent's plus one turn. Copies would hold
    ~20,000 x 256 message references (~40 MiB of lists); shared prefixes hold one node per row."""
    import tracemalloc

    path = tmp_path / "chain.csv"
    path.write_text(HEADER + _chain(20_000), encoding="utf-8")
    tracemalloc.start()
    loaded = load_dataset(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(loaded.samples) == 20_000
    assert peak < 50 * 1024 * 1024  # copies: ~100 MiB, f"peak {peak / 2**20:.1f} MiB"
    last = loaded.samples[-1].messages
    assert len(last) == MAX_HISTORY_MESSAGES and last[-1]["content"] == "A20000" and last[0]["content"] == "U19873"
    assert [m["content"] for m in loaded.samples[1].messages] == ["U1", "A1", "U2", "A2"]


def test_a_large_parent_id_cycle_is_reported_in_bounded_messages(tmp_path):
    """One cycle through 50,000 rows: each row is reported, and each message names the cycle's first rows and
    its length rather than all 50,000 rows (which would make the report quadratic in the cycle)."""
    n = 50_000
    body = "".join(f"{i},{i - 1 if i > 1 else n},,U{i},,A{i}\n" for i in range(1, n + 1)) + f"{n + 1},,,Q,,R\n"
    loaded = _load(tmp_path, body)
    assert [s.row for s in loaded.samples] == [n + 1]
    errors = [p for p in loaded.problems if p.severity == "error"]
    assert len(errors) == n
    assert all(len(p.message) < 200 for p in errors)
    assert "(50000 rows)" in errors[0].message
