"""What every contender is fed: rosters, mailmerge's files, pre-built messages.

Rosters come from samples/make_roster.py with a fixed seed and are kept
between runs. mailmerge gets the same candidates as a CSV, the same letter
(text and HTML, from templates/) as its template, and a server config that
points at the sink. The bare aiosmtplib loop gets messages built by
`offerletters preview`, so it sends exactly the bytes offerletters builds.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from babel.dates import format_date
from babel.numbers import format_currency
from python_calamine import CalamineWorkbook

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = REPO_ROOT / "templates"
ROSTER_SEED = 2027
# The sender offerletters and mailmerge both send as.
SENDER_NAME = "Acme Talent"
SENDER_ADDRESS = "talent@example.com"
SENDER = f"{SENDER_NAME} <{SENDER_ADDRESS}>"
LOCALE = "en_US"
ROSTER_TIMEOUT_S = 900.0
PREVIEW_TIMEOUT_S = 900.0
BOUNDARY = "offerletters-bench-alternative"


def roster(rows: int, cache_dir: Path) -> Path:
    """The roster of `rows` candidates, written once and reused afterwards."""
    path = cache_dir / f"roster-{rows}-seed{ROSTER_SEED}.xlsx"
    if path.exists():
        return path

    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.xlsx")
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "samples" / "make_roster.py"),
            "--rows",
            str(rows),
            "--seed",
            str(ROSTER_SEED),
            "--out",
            str(partial),
        ],
        check=True,
        capture_output=True,
        timeout=ROSTER_TIMEOUT_S,
    )
    partial.rename(path)
    return path


def prebuilt_messages(roster_path: Path, out_dir: Path, env: dict[str, str]) -> Path:
    """The roster's letters as .eml files, built by `offerletters preview`."""
    if out_dir.exists() and any(out_dir.glob("*.eml")):
        return out_dir

    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "offerletters",
            "preview",
            str(roster_path),
            "--out",
            str(out_dir),
        ],
        env=env,
        cwd=out_dir.parent,
        capture_output=True,
        text=True,
        timeout=PREVIEW_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0 or not any(out_dir.glob("*.eml")):
        raise RuntimeError(
            f"offerletters preview failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return out_dir


@dataclass(frozen=True)
class MailmergeFiles:
    """The three files mailmerge reads, by their usual names, in one folder."""

    folder: Path
    template: Path
    database: Path
    config: Path


def mailmerge_files(roster_path: Path, folder: Path, smtp_port: int) -> MailmergeFiles:
    """mailmerge's template, CSV and server config for this roster and sink."""
    folder.mkdir(parents=True, exist_ok=True)
    files = MailmergeFiles(
        folder,
        folder / "mailmerge_template.txt",
        folder / "mailmerge_database.csv",
        folder / "mailmerge_server.conf",
    )
    files.template.write_text(_mailmerge_template(), encoding="utf-8")
    files.config.write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {smtp_port}\nratelimit = 0\n",
        encoding="utf-8",
    )
    database = _csv_from_roster(roster_path, files.database.with_suffix(".partial"))
    database.replace(files.database)
    return files


def _mailmerge_template() -> str:
    """offerletters' own letter (subject, text, HTML) as a mailmerge template.

    mailmerge has no money or date filters, so those values come preformatted
    in the CSV, the way a user would prepare them in the spreadsheet.
    """
    subject = _plain_variables((TEMPLATES_DIR / "subject.txt").read_text()).strip()
    text = _plain_variables((TEMPLATES_DIR / "letter.txt").read_text())
    html = _plain_variables((TEMPLATES_DIR / "letter.html").read_text())
    return (
        "TO: {{ email }}\n"
        f"FROM: {SENDER}\n"
        f"SUBJECT: {subject}\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"\n'
        "\n"
        f"--{BOUNDARY}\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "\n"
        f"{text}\n"
        f"--{BOUNDARY}\n"
        "Content-Type: text/html; charset=utf-8\n"
        "\n"
        f"{html}\n"
        f"--{BOUNDARY}--\n"
    )


def _plain_variables(template: str) -> str:
    """Drop the `money` and `longdate` filters; the CSV holds formatted values."""
    return re.sub(r"\s*\|\s*(money|longdate)\b", "", template)


def _csv_from_roster(roster_path: Path, out: Path) -> Path:
    """Every roster row as mailmerge's CSV, with what the templates need."""
    sheet = CalamineWorkbook.from_path(str(roster_path)).get_sheet_by_index(0)
    header, *rows = sheet.to_python()
    columns = [_snake(str(name)) for name in header]
    with out.open("w", encoding="utf-8", newline="") as database:
        writer = csv.writer(database)
        writer.writerow([*columns, "first_name", "company", "sender_email"])
        for values in rows:
            row = dict(zip(columns, values, strict=True))
            row["offer_amount"] = format_currency(
                float(row["offer_amount"]),  # type: ignore[arg-type]  # a number cell
                str(row["currency"]),
                format="¤#,##0",
                currency_digits=False,
                locale=LOCALE,
            )
            row["start_date"] = _long_date(row["start_date"])
            first_name = str(row["name"]).split(maxsplit=1)[0]
            writer.writerow([*row.values(), first_name, SENDER_NAME, SENDER_ADDRESS])
    return out


def _long_date(value: object) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return str(format_date(value, "d MMMM yyyy", locale=LOCALE))
    return str(value)


def _snake(header: str) -> str:
    return re.sub(r"\W+", "_", header.strip().lower()).strip("_")
