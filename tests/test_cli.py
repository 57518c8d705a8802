"""The command line as a user runs it: send, validate and preview, in subprocesses."""

from __future__ import annotations

import email
import email.policy
import subprocess
from pathlib import Path

from offerletters.config import Settings
from tests import rosters
from tests.conftest import REPO, MakeSettings
from tests.rosters import Sheet, candidate, roster
from tests.support.services import run_cli, settings_env
from tests.support.smtp import SmtpSink

SAMPLE = REPO / "samples" / "email_list.xlsx"


def run(
    args: list[str], settings: Settings, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, settings_env(settings), cwd)


def write_roster(path: Path, *rows: list[rosters.Value]) -> Path:
    path.write_bytes(rosters.xlsx(Sheet("Roster", roster(*rows))))
    return path


def test_send_without_kafka_or_smtp_fills_the_outbox(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """The sample roster becomes one personalised .eml per candidate in the outbox."""
    settings = make_settings()

    result = run(["send", str(SAMPLE)], settings, tmp_path)

    assert result.returncode == 0, result.stderr
    files = sorted(settings.outbox_dir.glob("*.eml"))
    messages = [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        for f in files
    ]
    recipients = [m["To"].addresses[0].addr_spec for m in messages]
    assert len(files) >= 5
    assert len(set(recipients)) == len(files)
    assert f"delivered {len(files)}, failed 0" in result.stdout
    assert "embedded_mode" in result.stderr


def test_send_delivers_to_a_configured_smtp_server(
    smtp_settings: Settings, smtp: SmtpSink, tmp_path: Path
) -> None:
    """With an SMTP host set, `send` delivers there and writes no outbox."""
    path = write_roster(
        tmp_path / "r.xlsx", candidate(), candidate("Ana", "ana@example.com")
    )

    result = run(["send", str(path)], smtp_settings, tmp_path)

    assert result.returncode == 0, result.stderr
    assert sorted(r.recipients[0] for r in smtp.received) == [
        "ana@example.com",
        "zoe.muller@example.com",
    ]
    assert not smtp_settings.outbox_dir.exists()


def test_send_of_a_rejected_roster_lists_errors_and_sends_nothing(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A bad row makes `send` exit 1, name the row and column, and leave no letter."""
    settings = make_settings()
    path = write_roster(tmp_path / "r.xlsx", candidate(), candidate(email="nobody@"))

    result = run(["send", str(path)], settings, tmp_path)

    assert result.returncode == 1
    assert "row 3, Email" in result.stdout
    assert not list(settings.outbox_dir.glob("*.eml"))


def test_validate_reports_every_problem_and_exits_nonzero(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """`validate` lists each broken row and exits 1; a clean roster exits 0."""
    broken = write_roster(
        tmp_path / "broken.xlsx",
        candidate(email="x@"),
        candidate(amount="lots"),
        candidate(start="someday"),
    )
    clean = write_roster(tmp_path / "clean.xlsx", candidate())

    bad = run(["validate", str(broken)], make_settings(), tmp_path)
    good = run(["validate", str(clean)], make_settings(), tmp_path)

    assert bad.returncode == 1
    assert "row 2, Email" in bad.stdout
    assert "row 3, Offer Amount" in bad.stdout
    assert "row 4, Start Date" in bad.stdout
    assert good.returncode == 0, good.stdout + good.stderr
    assert "1 good row(s)" in good.stdout


def test_preview_writes_eml_and_html_and_sends_nothing(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """`preview --out DIR` writes each letter twice over and delivers none."""
    settings = make_settings()
    path = write_roster(
        tmp_path / "r.xlsx", candidate(), candidate("Ana", "ana@example.com")
    )

    result = run(["preview", str(path), "--out", "seen"], settings, tmp_path)

    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "seen").glob("*.eml"))) == 2
    html = sorted((tmp_path / "seen").glob("*.html"))
    assert len(html) == 2
    assert "$120,000" in html[0].read_text(encoding="utf-8")
    assert not settings.outbox_dir.exists()


def write_managed_roster(path: Path, *managers: str | None) -> Path:
    """A roster with a Hiring Manager column, one row per manager (None: empty)."""
    header = [*rosters.HEADER, "Hiring Manager"]
    rows = [
        [*candidate(email=f"c{i}@example.com"), manager]
        for i, manager in enumerate(managers)
    ]
    path.write_bytes(rosters.xlsx(Sheet("Roster", roster(*rows, header=header))))
    return path


def test_an_empty_optional_cell_leaves_its_sentence_out(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """The default letter skips "Reporting to" where the Hiring Manager is empty."""
    path = write_managed_roster(tmp_path / "r.xlsx", "Ana Silva", None)

    result = run(["preview", str(path), "--out", "seen"], make_settings(), tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    first, second = sorted((tmp_path / "seen").glob("*.html"))
    assert "Ana Silva is looking forward" in first.read_text(encoding="utf-8")
    assert "Reporting to" not in second.read_text(encoding="utf-8")
    assert "and  is" not in second.read_text(encoding="utf-8")


def test_an_empty_first_name_falls_back_to_the_name(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A First Name column greets by it, and a row that leaves it empty by Name."""
    header = [*rosters.HEADER, "First Name"]
    rows = [
        [*candidate("Zoë Müller", "z@example.com"), "Zozo"],
        [*candidate("Ana Lima", "a@example.com"), None],
    ]
    path = tmp_path / "r.xlsx"
    path.write_bytes(rosters.xlsx(Sheet("Roster", roster(*rows, header=header))))

    result = run(["preview", str(path), "--out", "seen"], make_settings(), tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    first, second = sorted((tmp_path / "seen").glob("*.html"))
    assert "Dear Zozo," in first.read_text(encoding="utf-8")
    assert "Dear Ana," in second.read_text(encoding="utf-8")


def test_an_empty_cell_the_templates_need_is_a_row_error(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """Templates that always print hiring_manager reject a row that leaves it empty."""
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "subject.txt").write_text("Your offer, {{ name }}")
    (templates / "letter.txt").write_text("Dear {{ name }},\nAsk {{ hiring_manager }}.")
    (templates / "letter.html").write_text("<p>Ask {{ hiring_manager }}.</p>")
    path = write_managed_roster(tmp_path / "r.xlsx", "Ana Silva", None)

    result = run(
        ["validate", str(path)], make_settings(templates_dir=templates), tmp_path
    )

    assert result.returncode == 1
    assert (
        "row 3, Hiring Manager: Hiring Manager is empty, and the letter needs it"
        " (letter.txt line 2)" in result.stdout
    )
    assert "1 good row(s)" in result.stdout


def test_an_unreadable_file_is_one_clear_line_not_a_traceback(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A file that is no spreadsheet ends with a one-line reason and exit 1."""
    path = tmp_path / "notes.xlsx"
    path.write_bytes(b"\x00\x01\x02 definitely not a spreadsheet \xff\xfe")

    result = run(["send", str(path)], make_settings(), tmp_path)

    assert result.returncode == 1
    assert "could not read this file as a spreadsheet" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_roster_path_that_does_not_exist_says_so(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A mistyped path is "no roster at", exit 1, not a complaint about its format."""
    result = run(["validate", "nope.xlsx"], make_settings(), tmp_path)

    assert result.returncode == 1
    assert result.stderr.strip() == "offerletters: there is no roster at nope.xlsx"


def test_the_worker_refuses_to_start_without_kafka(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """`worker` with no Kafka configured exits 2 and says what to set."""
    result = run(["worker"], make_settings(), tmp_path)

    assert result.returncode == 2
    assert "OFFERLETTERS_KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_unusable_settings_name_the_variable(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A sender that is no address stops start-up with the variable's name."""
    settings = make_settings()
    env = settings_env(settings, OFFERLETTERS_SENDER="Acme Talent")

    result = run_cli(["send", str(SAMPLE)], env, tmp_path)

    assert result.returncode == 2
    assert "OFFERLETTERS_SENDER" in result.stderr


def test_slashed_dates_read_in_the_configured_order(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """03/04/2027 is 4 March with OFFERLETTERS_DATE_ORDER=mdy, 3 April by default."""
    path = write_roster(tmp_path / "r.xlsx", candidate(start="03/04/2027"))

    us = run(
        ["preview", str(path), "--out", "us"], make_settings(date_order="mdy"), tmp_path
    )
    eu = run(["preview", str(path), "--out", "eu"], make_settings(), tmp_path)

    assert us.returncode == eu.returncode == 0, us.stdout + eu.stdout
    assert "4 March 2027" in next((tmp_path / "us").glob("*.html")).read_text()
    assert "3 April 2027" in next((tmp_path / "eu").glob("*.html")).read_text()


def test_the_api_that_cannot_reach_kafka_says_so_in_one_line(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """`api` with an unreachable broker exits 2 naming it, without a traceback."""
    settings = make_settings(kafka_bootstrap_servers="127.0.0.1:1")

    result = run(["api", "--port", "1"], settings, tmp_path)

    assert result.returncode == 2
    assert "Kafka at 127.0.0.1:1 is not usable" in result.stderr
    assert "Traceback" not in result.stderr
