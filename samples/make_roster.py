"""Write a realistic roster of invented candidates as an xlsx file.

    uv run python samples/make_roster.py --rows 100000 --out big.xlsx
    uv run python samples/make_roster.py --rows 20 --bad 3 --out broken.xlsx

Names come from many scripts and languages; addresses are at example.com and
example.org, which can never reach a real person. `--bad N` breaks N rows in
the ways HR spreadsheets really break, for trying out the row errors.
The file is streamed to disk, so a hundred thousand rows take seconds.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import xlsxwriter

HEADER = [
    "Name",
    "Email",
    "Role",
    "Offer Amount",
    "Currency",
    "Start Date",
    "Location",
    "Hiring Manager",
    "Department",
]

# Full names as their owners write them (family name first where that is the
# custom, no space in Chinese and Korean names), and an ASCII address part.
PEOPLE = [
    ("Zoë Müller", "zoe.muller"),
    ("José Álvarez", "jose.alvarez"),
    ("李雷", "li.lei"),
    ("Αλέξανδρος Παπαδόπουλος", "alexandros.papadopoulos"),
    ("Priyá Ñúñez", "priya.nunez"),
    ("Amara Okafor", "amara.okafor"),
    ("Søren Kierkegaard-Holm", "soren.holm"),
    ("Ольга Иванова", "olga.ivanova"),
    ("田中 美咲", "misaki.tanaka"),
    ("Fatima Al-Sayed", "fatima.alsayed"),
    ("Łukasz Wiśniewski", "lukasz.wisniewski"),
    ("Chloé Dubois", "chloe.dubois"),
    ("Nguyễn Thị Hoa", "hoa.nguyen"),
    ("Siobhán O'Connor", "siobhan.oconnor"),
    ("Arjun Mehta", "arjun.mehta"),
    ("Yasmin Haddad", "yasmin.haddad"),
    ("Björn Lindqvist", "bjorn.lindqvist"),
    ("Camila Gonçalves", "camila.goncalves"),
    ("김민준", "minjun.kim"),
    ("Emily Carter", "emily.carter"),
]

ROLES = {
    "Engineering": ["Software Engineer", "Senior Software Engineer", "Data Engineer"],
    "Design": ["Product Designer", "UX Researcher"],
    "Product": ["Product Manager", "Technical Program Manager"],
    "Finance": ["Financial Analyst", "Payroll Specialist"],
    "People": ["HR Business Partner", "Recruiter"],
}

# City, currency, and a typical annual offer range in that currency.
LOCATIONS = [
    ("Berlin", "EUR", (55_000, 95_000)),
    ("Madrid", "EUR", (40_000, 75_000)),
    ("London", "GBP", (50_000, 110_000)),
    ("Bengaluru", "INR", (1_200_000, 4_500_000)),
    ("São Paulo", "BRL", (120_000, 300_000)),
    ("Austin", "USD", (90_000, 180_000)),
    ("Singapore", "SGD", (70_000, 160_000)),
    ("Athens", "EUR", (30_000, 60_000)),
]

MANAGERS = ["Ana Silva", "Rahul Verma", "Ingrid Berg", "Tomás Ruiz", "Hana Sato"]
DOMAINS = ["example.com", "example.org"]


@dataclass(frozen=True, slots=True)
class Row:
    """One roster row, typed as it goes into the workbook."""

    name: str
    email: str
    role: str
    amount: float | str
    currency: str
    start: date | str
    location: str
    manager: str
    department: str


def invent_row(
    index: int, people: list[tuple[str, str]], rng: random.Random, first_start: date
) -> Row:
    """A plausible candidate; everyone appears once before anyone repeats,
    and a repeat gets a number in the address so it stays unique."""
    cycle, position = divmod(index, len(people))
    name, local = people[position]
    department = rng.choice(list(ROLES))
    city, currency, (low, high) = rng.choice(LOCATIONS)
    step = 500 if high < 1_000_000 else 10_000
    return Row(
        name=name,
        email=f"{local}{cycle or ''}@{rng.choice(DOMAINS)}",
        role=rng.choice(ROLES[department]),
        amount=float(rng.randrange(low, high, step)),
        currency=currency,
        start=first_start + timedelta(weeks=rng.randrange(0, 26)),
        location=city,
        manager=rng.choice(MANAGERS),
        department=department,
    )


# Ways a row goes wrong in real rosters; each takes a good row and breaks it.
BREAKAGES: list[Callable[[Row, Row], Row]] = [
    lambda row, _: replace(row, email=row.email.split("@")[0] + "@"),
    lambda row, _: replace(row, role=""),
    lambda row, _: replace(row, amount=-abs(float(row.amount))),
    lambda row, _: replace(row, amount="about 90k"),
    lambda row, _: replace(row, start="31/02/2027"),
    lambda row, first: replace(row, email=first.email.upper()),
]


def write_roster(path: Path, rows: int, seed: int, bad: int, first_start: date) -> None:
    """Stream `rows` invented candidates, `bad` of them broken, into an xlsx file."""
    rng = random.Random(seed)  # noqa: S311  # invented sample data, not a secret
    broken = set(rng.sample(range(1, rows), min(bad, rows - 1))) if rows > 1 else set()
    people = rng.sample(PEOPLE, len(PEOPLE))

    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    # A fixed creation time makes the same seed give the same bytes.
    workbook.set_properties({"created": datetime(2026, 1, 1), "author": "offerletters"})
    worksheet = workbook.add_worksheet("Candidates")
    bold = workbook.add_format({"bold": True})
    money = workbook.add_format({"num_format": "#,##0"})
    day = workbook.add_format({"num_format": "d mmm yyyy"})
    worksheet.set_column(0, len(HEADER) - 1, 20)
    worksheet.write_row(0, 0, HEADER, bold)
    worksheet.freeze_panes(1, 0)

    first: Row | None = None
    breakages = 0
    for index in range(rows):
        row = invent_row(index, people, rng, first_start)
        first = first or row
        if index in broken:
            row = BREAKAGES[breakages % len(BREAKAGES)](row, first)
            breakages += 1
        _write(worksheet, index + 1, row, money, day)
    workbook.close()


def _write(worksheet: Any, number: int, row: Row, money: Any, day: Any) -> None:
    """One row, each cell written with its own type: text, number or date.

    The typed writers skip xlsxwriter's type dispatch, which halves the time.
    """
    write_string = worksheet.write_string
    write_string(number, 0, row.name)
    write_string(number, 1, row.email)
    write_string(number, 2, row.role)
    if isinstance(row.amount, float):
        worksheet.write_number(number, 3, row.amount, money)
    else:
        write_string(number, 3, row.amount)
    write_string(number, 4, row.currency)
    if isinstance(row.start, date):
        worksheet.write_datetime(number, 5, row.start, day)
    else:
        write_string(number, 5, row.start)
    write_string(number, 6, row.location)
    write_string(number, 7, row.manager)
    write_string(number, 8, row.department)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="candidates to write")
    parser.add_argument(
        "--out", type=Path, default=Path("roster.xlsx"), help="xlsx to write"
    )
    parser.add_argument("--seed", type=int, default=2027, help="same seed, same roster")
    parser.add_argument("--bad", type=int, default=0, help="rows to break on purpose")
    parser.add_argument(
        "--first-start",
        type=date.fromisoformat,
        default=date(2027, 1, 4),
        help="earliest start date (ISO); starts spread over the next six months",
    )
    args = parser.parse_args()

    write_roster(args.out, args.rows, args.seed, args.bad, args.first_start)
    print(f"wrote {args.rows:,} candidates ({args.bad} broken) to {args.out}")


if __name__ == "__main__":
    main()
