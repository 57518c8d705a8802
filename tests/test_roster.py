"""Roster reading, checked on real files in every supported format."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from offerletters.errors import RosterTooLarge, RosterUnreadable
from offerletters.roster import (
    COLUMN_SYNONYMS,
    REQUIRED_COLUMNS,
    Candidate,
    Roster,
    RosterOptions,
    RosterRejected,
    RowError,
    open_roster,
)
from tests.rosters import (
    HEADER,
    Formula,
    Sheet,
    Value,
    candidate,
    csv_bytes,
    excel_serial,
    ods,
    password_protected,
    rewrite_parts,
    roster,
    xls,
    xlsb,
    xlsx,
)

TODAY = date(2026, 12, 1)


def opened(data: bytes, **options: Any) -> Roster:
    """Open a roster as of TODAY, so past-date notes do not depend on the clock."""
    return open_roster(data, RosterOptions(**{"today": TODAY, **options}))


def read(data: bytes, **options: Any) -> list[Candidate | RowError]:
    return list(opened(data, **options).rows())


def candidates(data: bytes, **options: Any) -> list[Candidate]:
    items = read(data, **options)
    assert all(isinstance(item, Candidate) for item in items), items
    return [item for item in items if isinstance(item, Candidate)]


def errors(data: bytes, **options: Any) -> list[RowError]:
    return [item for item in read(data, **options) if isinstance(item, RowError)]


def where(found: list[RowError]) -> list[tuple[int, str | None]]:
    """Row errors as (row, column) pairs, for exact comparison."""
    return [(error.row, error.column) for error in found]


def one_sheet(*rows: list[Value], header: Sequence[Value] = HEADER) -> bytes:
    return xlsx(Sheet("Roster", roster(*rows, header=header)))


def one_value(column: str, value: Value) -> list[Value]:
    """A valid row with one column's value replaced."""
    row = candidate()
    row[HEADER.index(column)] = value
    return row


# --- block 1: a plain xlsx roster ----------------------------------------------


def test_valid_rows_become_candidates_with_exact_values() -> None:
    """Each row of a clean xlsx roster becomes a Candidate with exact typed values."""
    data = one_sheet(
        candidate(),
        candidate(
            "José Álvarez",
            "jose@example.org",
            "Designer",
            1234.5,
            date(2027, 3, 1),
            "Madrid",
        ),
    )

    assert candidates(data) == [
        Candidate(
            row=2,
            name="Zoë Müller",
            email="zoe.muller@example.com",
            role="Data Engineer",
            offer_amount=Decimal("120000"),
            start_date=date(2027, 1, 15),
            location="Berlin",
        ),
        Candidate(
            row=3,
            name="José Álvarez",
            email="jose@example.org",
            role="Designer",
            offer_amount=Decimal("1234.5"),
            start_date=date(2027, 3, 1),
            location="Madrid",
        ),
    ]


def test_open_roster_reports_sheet_header_row_and_columns() -> None:
    """open_roster names the chosen sheet, the header row and the header cells."""
    data = one_sheet(candidate(), header=[*HEADER, "Hiring Manager"])

    opened_roster = opened(data)

    assert opened_roster.sheet == "Roster"
    assert opened_roster.header_row == 1
    assert opened_roster.columns == [*HEADER, "Hiring Manager"]
    assert opened_roster.extra_columns == {"hiring_manager": "Hiring Manager"}


def test_amounts_are_decimals_never_floats() -> None:
    """Numeric cells become exact Decimals, including float noise from formulas."""
    data = one_sheet(
        one_value("Offer Amount", 120000.0),
        one_value("Offer Amount", 1234.56),
        one_value("Offer Amount", 132000 * 1.1),
        one_value("Offer Amount", 95000),
    )

    amounts = [
        found.offer_amount for found in candidates(data, allow_duplicate_emails=True)
    ]

    assert amounts == [
        Decimal("120000"),
        Decimal("1234.56"),
        Decimal("145200"),
        Decimal("95000"),
    ]
    assert [str(amount) for amount in amounts] == [
        "120000",
        "1234.56",
        "145200",
        "95000",
    ]


def test_header_matches_regardless_of_case_and_surrounding_spaces() -> None:
    """Headers like '  NAME ' and 'offer amount' still name the required columns."""
    header: list[Value] = [
        "  NAME ",
        "email",
        "Role ",
        "offer amount",
        "START DATE",
        " location",
    ]

    found = candidates(one_sheet(candidate(), header=header))

    assert [(c.name, c.offer_amount) for c in found] == [
        ("Zoë Müller", Decimal("120000"))
    ]


def test_other_columns_are_kept_as_extras_under_snake_case_keys() -> None:
    """Extra columns reach the Candidate under snake_case keys; blank ones are left out.

    Left out, so that a template's `is defined` guard sees an empty cell as
    the sheet shows it: nothing there.
    """
    header: list[Value] = [*HEADER, "Hiring Manager", "Department", "TeamLead", "Notes"]
    data = one_sheet(
        [*candidate(), "Ana Silva", "Data Platform", "Kim", None],
        [*candidate(email="li@example.org"), None, "Research", None, "part-time"],
        header=header,
    )

    opened_roster = opened(data)
    found = [item for item in opened_roster.rows() if isinstance(item, Candidate)]

    assert opened_roster.extra_columns == {
        "hiring_manager": "Hiring Manager",
        "department": "Department",
        "team_lead": "TeamLead",
        "notes": "Notes",
    }
    assert [dict(item.extra) for item in found] == [
        {
            "hiring_manager": "Ana Silva",
            "department": "Data Platform",
            "team_lead": "Kim",
        },
        {"department": "Research", "notes": "part-time"},
    ]


def test_email_is_validated_and_stored_normalised() -> None:
    """A valid address is kept in normalised form; an invalid one is a row error."""
    data = one_sheet(
        one_value("Email", "Zoe.Muller@Example.COM"),
        one_value("Email", "zoe.muller@"),
        one_value("Email", "Zoë <zoe@example.com>"),
    )

    items = read(data)

    assert isinstance(items[0], Candidate)
    assert items[0].email == "Zoe.Muller@example.com"
    assert where([e for e in items if isinstance(e, RowError)]) == [
        (3, "Email"),
        (4, "Email"),
    ]
    bad = items[1]
    assert isinstance(bad, RowError)
    assert bad.value == "zoe.muller@"
    assert bad.message == "There must be something after the @-sign."
    assert bad.fix == "write one address alone, like name@example.com"


def test_blank_rows_are_skipped_and_row_numbers_stay_the_sheets() -> None:
    """Blank rows produce nothing and later rows keep the numbers Excel shows."""
    data = one_sheet(
        candidate(),
        [None] * 6,
        ["   ", "", None, " ", None, None],
        candidate(email="second@example.com", amount="oops"),
    )

    items = read(data)

    assert [item.row for item in items] == [2, 5]
    assert where([e for e in items if isinstance(e, RowError)]) == [(5, "Offer Amount")]


def test_every_empty_required_value_is_its_own_row_error() -> None:
    """Each empty required cell gives one RowError naming its column."""
    data = one_sheet(["Zoë Müller", None, "  ", 120000, None, "Berlin"])

    found = errors(data)

    assert where(found) == [(2, "Email"), (2, "Role"), (2, "Start Date")]
    assert [e.message for e in found] == [
        "Email is empty",
        "Role is empty",
        "Start Date is empty",
    ]
    assert found[0].fix == "fill in the email"


def test_invalid_values_name_row_column_value_and_fix() -> None:
    """A wrong amount or date gives a RowError with the sheet row and the value."""
    data = one_sheet(
        candidate(),
        one_value("Offer Amount", "a lot"),
        one_value("Start Date", "next spring"),
    )

    found = errors(data, allow_duplicate_emails=True)

    assert found == [
        RowError(
            row=3,
            column="Offer Amount",
            message="'a lot' is not an amount",
            value="a lot",
            fix="type the amount as a number, like 120000 or 120000.50",
        ),
        RowError(
            row=4,
            column="Start Date",
            message="'next spring' is not a date",
            value="next spring",
            fix="type a date such as 2027-01-15, or format the cell as a date",
        ),
    ]


def test_date_and_datetime_cells_become_dates_without_time() -> None:
    """Date cells are read as dates; date-time cells drop the time, with no shift."""
    data = one_sheet(
        one_value("Start Date", date(2027, 1, 15)),
        one_value("Start Date", datetime(2027, 2, 1, 23, 59)),
        one_value("Start Date", datetime(2027, 3, 1, 0, 1)),
    )

    starts = [
        found.start_date for found in candidates(data, allow_duplicate_emails=True)
    ]

    assert starts == [date(2027, 1, 15), date(2027, 2, 1), date(2027, 3, 1)]


def test_missing_required_columns_reject_the_roster_one_error_each() -> None:
    """A header without some required columns raises one RowError per column."""
    data = xlsx(
        Sheet(
            "Roster",
            [
                ["Offers"],
                [],
                ["Name", "Mail addr", "Position", "Pay", "Start Date", "City"],
            ],
        )
    )

    with pytest.raises(RosterRejected) as rejected:
        open_roster(data)

    assert where(rejected.value.errors) == [(3, "Email"), (3, "Offer Amount")]
    assert rejected.value.errors[0].message == (
        "no column for Email; the header row has: Name, Mail addr, Position, Pay,"
        " Start Date, City"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"   \r\n\t ", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "this is not a spreadsheet"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00", "this is not a spreadsheet"),
        (
            b"<html><body><table><tr><td>Name</td></tr></table></body></html>",
            "web page",
        ),
        (b"Name,Email\nJos\xe9,jose@example.com\n", "the text is not UTF-8"),
    ],
)
def test_non_spreadsheets_are_unreadable_with_a_reason(
    data: bytes, reason: str
) -> None:
    """Empty, binary, HTML and non-UTF-8 uploads raise RosterUnreadable saying why."""
    with pytest.raises(RosterUnreadable) as unreadable:
        open_roster(data)

    assert reason in unreadable.value.reason


def test_damaged_workbooks_are_unreadable_not_a_calamine_error() -> None:
    """A truncated or corrupted workbook is RosterUnreadable, not calamine's error."""
    whole = one_sheet(candidate())
    corrupted = rewrite_parts(
        whole,
        lambda name, body: (
            body[: len(body) // 2] if name.endswith("sheet1.xml") else body
        ),
    )

    scrambled = _scrambled_sheet(
        one_sheet(*(candidate(email=f"p{i}@example.com") for i in range(300)))
    )

    for data in (
        whole[: len(whole) // 2],
        corrupted,
        scrambled,
        xls(Sheet("S", [["x"]]))[:700],
    ):
        with pytest.raises(RosterUnreadable) as unreadable:
            list(open_roster(data).rows())
        assert "damaged" in unreadable.value.reason


def test_a_password_protected_workbook_says_so() -> None:
    """An encrypted xlsx is refused with the advice to remove the password."""
    data = password_protected(one_sheet(candidate()))

    with pytest.raises(RosterUnreadable) as unreadable:
        open_roster(data)

    assert unreadable.value.reason.startswith("the workbook is protected by a password")
    assert unreadable.value.reason.endswith("remove the password and upload it again")


def _scrambled_sheet(data: bytes) -> bytes:
    """The xlsx with bytes flipped inside its sheet's compressed stream."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    damaged = bytearray(data)
    for offset in range(start, start + 40):
        damaged[offset] ^= 0x5A
    return bytes(damaged)


def test_zip_archives_that_are_not_spreadsheets_are_unreadable() -> None:
    """A Word document or a plain zip is recognised as not a spreadsheet."""
    word = _zip(
        {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"}
    )
    plain = _zip({"notes.txt": b"hello"})

    with pytest.raises(RosterUnreadable, match="text document"):
        open_roster(word)
    with pytest.raises(RosterUnreadable, match="holds no spreadsheet"):
        open_roster(plain)


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in parts.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def test_rows_stream_lazily_and_can_be_read_again() -> None:
    """rows() yields before reading everything, and a second call starts over."""
    data = one_sheet(*(candidate(email=f"c{i}@example.com") for i in range(5)))
    opened_roster = opened(data, max_rows=2)

    stream = opened_roster.rows()
    first = next(stream)
    again = next(opened_roster.rows())

    assert isinstance(first, Candidate)
    assert first == again
    assert first.row == 2


# --- block 2: formats ----------------------------------------------------------

ROWS = roster(
    candidate(),
    candidate(
        "李雷",
        "li.lei@example.org",
        "Product Manager",
        95000.5,
        date(2027, 2, 1),
        "上海",
    ),
    candidate(
        "Αλέξανδρος Παπαδόπουλος",
        "alex@example.com",
        "Engineer",
        88000,
        date(2027, 3, 8),
        "Αθήνα",
    ),
)
EXPECTED = [
    (
        2,
        "Zoë Müller",
        "zoe.muller@example.com",
        Decimal("120000"),
        date(2027, 1, 15),
        "Berlin",
    ),
    (3, "李雷", "li.lei@example.org", Decimal("95000.5"), date(2027, 2, 1), "上海"),
    (
        4,
        "Αλέξανδρος Παπαδόπουλος",
        "alex@example.com",
        Decimal("88000"),
        date(2027, 3, 8),
        "Αθήνα",
    ),
]


def _xlsm(*sheets: Sheet) -> bytes:
    """An xlsx saved as macro-enabled: only the main part's content type differs."""
    return rewrite_parts(
        xlsx(*sheets),
        lambda name, body: (
            body.replace(
                b"spreadsheetml.sheet.main+xml", b"ms-excel.sheet.macroEnabled.main+xml"
            )
            if name == "[Content_Types].xml"
            else body
        ),
    )


WRITERS: dict[str, Callable[[Sheet], bytes]] = {
    "xlsx": xlsx,
    "xlsm": _xlsm,
    "xlsb": xlsb,
    "xls": xls,
    "ods": ods,
    "csv": lambda sheet: csv_bytes(sheet.rows),
    "csv-bom": lambda sheet: csv_bytes(sheet.rows, encoding="utf-8-sig"),
    "csv-semicolon": lambda sheet: csv_bytes(sheet.rows, delimiter=";"),
    "csv-sep-line": lambda sheet: csv_bytes(sheet.rows, delimiter=";", sep_line=True),
    "tab-separated-utf16": lambda sheet: csv_bytes(
        sheet.rows, delimiter="\t", encoding="utf-16"
    ),
}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_format_gives_the_same_candidates(kind: str) -> None:
    """xlsx, xlsm, xlsb, xls, ods and CSV variants of one roster read identically."""
    data = WRITERS[kind](Sheet("Roster", ROWS))

    found = candidates(data)

    assert [
        (c.row, c.name, c.email, c.offer_amount, c.start_date, c.location)
        for c in found
    ] == EXPECTED


WORKBOOK_WRITERS: dict[str, Callable[..., bytes]] = {
    "xlsx": xlsx,
    "xlsb": xlsb,
    "xls": xls,
    "ods": ods,
}


@pytest.mark.parametrize("kind", list(WORKBOOK_WRITERS))
def test_the_first_visible_sheet_with_a_roster_header_is_used(kind: str) -> None:
    """Instruction sheets and hidden sheets are passed over for the roster sheet."""
    data = WORKBOOK_WRITERS[kind](
        Sheet(
            "Read me", [["Fill in one row per candidate."], ["Name goes in column A"]]
        ),
        Sheet("Old", roster(candidate(name="Hidden Person")), hidden=True),
        Sheet("Candidates", roster(candidate())),
        Sheet("Later", roster(candidate(name="Later Person"))),
    )

    opened_roster = opened(data)

    assert opened_roster.sheet == "Candidates"
    assert [c.name for c in opened_roster.rows() if isinstance(c, Candidate)] == [
        "Zoë Müller"
    ]


def test_a_named_sheet_is_used_even_when_hidden() -> None:
    """RosterOptions.sheet picks that sheet, hidden or not."""
    data = xlsx(
        Sheet("Candidates", roster(candidate())),
        Sheet("Old", roster(candidate(name="Hidden Person")), hidden=True),
    )

    found = candidates(data, sheet="Old")

    assert [c.name for c in found] == ["Hidden Person"]


def test_an_unknown_sheet_name_lists_the_sheets() -> None:
    """Naming a sheet that does not exist is unreadable and lists the real names."""
    data = xlsx(Sheet("Candidates", roster(candidate())), Sheet("Notes", [["x"]]))

    with pytest.raises(RosterUnreadable) as unreadable:
        opened(data, sheet="Roster")

    assert unreadable.value.reason == (
        "there is no sheet named 'Roster'; the sheets are 'Candidates', 'Notes'"
    )


def test_header_below_title_and_blank_rows_is_found() -> None:
    """Title and blank rows above the header are skipped; rows keep sheet numbers."""
    data = xlsx(
        Sheet(
            "Roster",
            [
                ["Acme Corp: offers for January"],
                ["Prepared by HR", None, None, "Confidential"],
                [],
                HEADER,
                candidate(),
            ],
        )
    )

    opened_roster = opened(data)

    assert opened_roster.header_row == 4
    assert [item.row for item in opened_roster.rows()] == [5]


SYNONYMS = [
    (column, synonym)
    for column, synonyms in COLUMN_SYNONYMS.items()
    if column in REQUIRED_COLUMNS
    for synonym in synonyms
]


@pytest.mark.parametrize(("column", "synonym"), SYNONYMS)
def test_every_synonym_names_its_column(column: str, synonym: str) -> None:
    """Each synonym in the table is understood as its column."""
    header: list[Value] = [synonym if name == column else name for name in HEADER]

    found = candidates(one_sheet(candidate(), header=header))

    assert [(c.email, c.offer_amount) for c in found] == [
        ("zoe.muller@example.com", Decimal("120000"))
    ]


def test_headers_match_regardless_of_punctuation_and_remarks() -> None:
    """'E-Mail Address', 'Salary (USD)' and 'D.O.J.' name their columns."""
    header: list[Value] = [
        "Full-Name",
        "E-Mail Address",
        "Job title:",
        "Salary (USD)",
        "D.O.J.",
        "Work_Location",
    ]

    found = candidates(one_sheet(candidate(), header=header))

    assert [(c.name, c.start_date) for c in found] == [
        ("Zoë Müller", date(2027, 1, 15))
    ]


def test_two_columns_for_one_meaning_reject_the_roster() -> None:
    """'Salary' beside 'Offer Amount' is ambiguous and rejected naming both."""
    data = one_sheet(
        candidate(), header=[*HEADER[:3], "Salary", *HEADER[4:], "Offer Amount"]
    )

    with pytest.raises(RosterRejected) as rejected:
        open_roster(data)

    assert where(rejected.value.errors) == [(1, "Offer Amount")]
    assert rejected.value.errors[0].message == (
        'more than one column means Offer Amount: "Salary" and "Offer Amount"'
    )


def test_a_header_with_no_known_column_reports_what_it_found() -> None:
    """A CSV whose first row names nothing we know lists its cells in each error."""
    data = csv_bytes([["id", "who"], ["1", "Zoë"]])

    with pytest.raises(RosterRejected) as rejected:
        open_roster(data)

    assert where(rejected.value.errors) == [(1, column) for column in REQUIRED_COLUMNS]
    assert (
        rejected.value.errors[0].message
        == "no column for Name; the header row has: id, who"
    )


def test_currency_column_is_read_upper_cased_and_checked() -> None:
    """A Currency column gives each candidate an ISO code; a bad code is a row error."""
    header: list[Value] = [*HEADER, "Currency"]
    data = one_sheet(
        [*candidate(), "eur"],
        [*candidate(email="b@example.com"), " usd "],
        [*candidate(email="c@example.com"), "EURO"],
        [*candidate(email="d@example.com"), None],
        header=header,
    )

    items = read(data)

    assert [item.currency for item in items if isinstance(item, Candidate)] == [
        "EUR",
        "USD",
        None,
    ]
    assert [(e.row, e.column, e.value) for e in items if isinstance(e, RowError)] == [
        (4, "Currency", "EURO")
    ]


def test_currency_written_in_the_amount_fills_or_contradicts_the_column() -> None:
    """'USD 95,000' sets the currency, and contradicts a Currency column saying EUR."""
    header: list[Value] = [*HEADER, "Currency"]
    data = one_sheet(
        [*one_value("Offer Amount", "USD 95,000"), None],
        [*candidate(email="b@example.com", amount="95 000 €"), "EUR"],
        [*candidate(email="c@example.com", amount="USD 95,000"), "EUR"],
        header=header,
    )

    items = read(data)

    assert [(i.row, i.currency) for i in items if isinstance(i, Candidate)] == [
        (2, "USD"),
        (3, "EUR"),
    ]
    assert [(e.row, e.column, e.message) for e in items if isinstance(e, RowError)] == [
        (4, "Offer Amount", "the amount is in USD but the Currency column says EUR")
    ]


@pytest.mark.parametrize(
    ("written", "amount"),
    [
        ("$120,000", Decimal("120000")),
        ("120 000 €", Decimal("120000")),
        ("120\u202f000\u00a0€", Decimal("120000")),
        ("USD 95,000.50", Decimal("95000.5")),
        ("1.2e5", Decimal("120000")),
        ("120000", Decimal("120000")),
        ("120000.00", Decimal("120000")),
        ("€1.234,56", Decimal("1234.56")),
        ("95,5", Decimal("95.5")),
        ("CHF 1'250'000", Decimal("1250000")),
        ("₹12,00,000", Decimal("1200000")),
        ("GBP 45,000", Decimal("45000")),
        ("85000 EUR", Decimal("85000")),
    ],
)
def test_amounts_typed_as_text_are_understood(written: str, amount: Decimal) -> None:
    """Currency signs, codes and thousands separators in typed amounts are handled."""
    found = candidates(one_sheet(one_value("Offer Amount", written)))

    assert [c.offer_amount for c in found] == [amount]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("-5000", "the amount is negative"),
        ("($5,000)", "the amount is negative"),
        (-5000, "the amount is negative"),
        ("0", "the amount is zero"),
        (0, "the amount is zero"),
        (
            "1234.567",
            "'1234.567' is ambiguous: the dot may separate thousands or decimals",
        ),
        (
            "120.000",
            "'120.000' is ambiguous: the dot may separate thousands or decimals",
        ),
        (1234.567, "the amount has more than two decimal places"),
        ("1234.5678", "the amount has more than two decimal places"),
        ("120k", "'120k' is not an amount"),
        ("about 5000", "'about 5000' is not an amount"),
        ("12,3456,789", "'12,3456,789' has misplaced thousands separators"),
        ("1,2345", "'1,2345' has misplaced thousands separators"),
        ("USD 5 EUR", "'USD 5 EUR' names two currencies"),
        (True, "TRUE is not an amount"),
        (date(2027, 1, 1), "2027-01-01 is not an amount"),
        ("1e20", "the amount is implausibly large"),
    ],
)
def test_impossible_amounts_are_row_errors(written: Value, message: str) -> None:
    """Negative, zero, over-precise and unreadable amounts are row errors."""
    found = errors(one_sheet(one_value("Offer Amount", written)))

    assert [(e.row, e.column, e.message) for e in found] == [
        (2, "Offer Amount", message)
    ]


@pytest.mark.parametrize(
    ("written", "start"),
    [
        ("2027-01-15", date(2027, 1, 15)),
        ("2027-01-15 00:00:00", date(2027, 1, 15)),
        ("2027-01-15T23:30:00-05:00", date(2027, 1, 15)),
        ("15/01/2027", date(2027, 1, 15)),
        ("15.01.2027", date(2027, 1, 15)),
        ("15-01-2027", date(2027, 1, 15)),
        ("03/04/2027", date(2027, 4, 3)),
        ("15/01/27", date(2027, 1, 15)),
        ("15 Jan 2027", date(2027, 1, 15)),
        ("15-Jan-27", date(2027, 1, 15)),
        ("15th of January, 2027", date(2027, 1, 15)),
        ("January 15, 2027", date(2027, 1, 15)),
        ("Sept 1 2027", date(2027, 9, 1)),
        ("Friday, 15 January 2027", date(2027, 1, 15)),
        ("15/01/2027 09:00", date(2027, 1, 15)),
        ("46402", date(2027, 1, 15)),
        ("20270115", date(2027, 1, 15)),
        (46402, date(2027, 1, 15)),
        (46402.75, date(2027, 1, 15)),
        (20270115, date(2027, 1, 15)),
    ],
)
def test_start_dates_typed_or_numbered_are_understood(
    written: Value, start: date
) -> None:
    """ISO text, day/month/year text, month names and Excel serials become dates."""
    found = candidates(one_sheet(one_value("Start Date", written)))

    assert [c.start_date for c in found] == [start]


def test_month_first_dates_follow_the_option() -> None:
    """With day_first=False, 03/04/2027 is 4 March and 01/15/2027 is 15 January."""
    data = one_sheet(
        one_value("Start Date", "03/04/2027"),
        one_value("Start Date", "01/15/2027"),
    )

    found = candidates(data, day_first=False, allow_duplicate_emails=True)

    assert [c.start_date for c in found] == [date(2027, 3, 4), date(2027, 1, 15)]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (
            "31/02/2027",
            "'31/02/2027' is not a real date (day is out of range for month)",
        ),
        ("01/15/2027", "'01/15/2027' has no month 15: dates read as day/month/year"),
        ("1899-01-01", "'1899-01-01' is not a plausible start date (year 1899)"),
        ("2150-06-01", "'2150-06-01' is not a plausible start date (year 2150)"),
        (date(1980, 5, 1), "'1980-05-01' is not a plausible start date (year 1980)"),
        ("15 Smarch 2027", "'15 Smarch 2027' is not a date: 'Smarch' is not a month"),
        ("ASAP", "'ASAP' is not a date"),
        (12345, "12345 is a number, not a date"),
        (25000, "'25000' is not a plausible start date (year 1968)"),
        (True, "TRUE is not a date"),
    ],
)
def test_impossible_start_dates_are_row_errors(written: Value, message: str) -> None:
    """Dates that cannot be real or sensible start dates are row errors, not crashes."""
    found = errors(one_sheet(one_value("Start Date", written)))

    assert [(e.row, e.column, e.message) for e in found] == [(2, "Start Date", message)]


def test_a_time_cell_is_not_a_start_date() -> None:
    """A cell holding only a time of day is a row error."""
    data = one_sheet(one_value("Start Date", time(9, 30)))

    found = errors(data)

    assert [(e.row, e.column, e.message) for e in found] == [
        (2, "Start Date", "09:30:00 is not a date")
    ]


@pytest.mark.parametrize("date1904", [False, True])
def test_serial_numbers_follow_the_workbooks_date_system(date1904: bool) -> None:
    """General-formatted serials count from 1900 or 1904, as the xlsx workbook says."""
    serial = excel_serial(date(2027, 1, 15), date1904)
    data = xlsx(
        Sheet(
            "Roster",
            roster(one_value("Start Date", serial), candidate(email="b@example.com")),
        ),
        date1904=date1904,
    )

    found = candidates(data)

    assert [c.start_date for c in found] == [date(2027, 1, 15), date(2027, 1, 15)]


def test_xlsb_serial_numbers_follow_the_1904_flag() -> None:
    """An xlsb workbook's 1904 flag moves general-formatted serials by 1462 days."""
    serial = excel_serial(date(2027, 1, 15), date1904=True)
    data = xlsb(Sheet("Roster", roster(one_value("Start Date", serial))), date1904=True)

    assert [c.start_date for c in candidates(data)] == [date(2027, 1, 15)]
    assert excel_serial(date(2027, 1, 15)) - serial == 1462


def test_a_past_start_date_is_a_note_not_an_error() -> None:
    """A start date before today is accepted with a note saying it is in the past."""
    data = one_sheet(
        one_value("Start Date", date(2020, 3, 3)),
        candidate(email="b@example.com", start=TODAY),
    )

    found = candidates(data)

    assert [c.notes for c in found] == [("start date 3 March 2020 is in the past",), ()]


def test_duplicate_addresses_are_row_errors_unless_allowed() -> None:
    """A second row with the same address (any case) points at the first row."""
    data = one_sheet(
        candidate(),
        candidate(name="Other"),
        candidate(email="ZOE.MULLER@example.com"),
    )

    found = errors(data)

    assert [(e.row, e.column, e.message) for e in found] == [
        (3, "Email", "same address as row 2"),
        (4, "Email", "same address as row 2"),
    ]
    assert len(candidates(data, allow_duplicate_emails=True)) == 3


def test_cells_are_cleaned_of_breaks_and_odd_spaces() -> None:
    """Line breaks, tabs, Excel's _x000D_ and no-break spaces become single spaces."""
    data = one_sheet(
        candidate(
            name="  Zoë\r\nMüller ",
            role="Data\tEngineer_x000D_\nII",
            location="New\u00a0York\u202fCity\u2007East",
            email=" zoe.muller@example.com\u200b",
        )
    )

    found = candidates(data)

    assert [(c.name, c.role, c.location, c.email) for c in found] == [
        (
            "Zoë Müller",
            "Data Engineer II",
            "New York City East",
            "zoe.muller@example.com",
        )
    ]


def test_excels_encoded_line_breaks_in_shared_strings_become_spaces() -> None:
    """A raw _x000D_ escape, as Excel stores a carriage return, is read as a space."""
    data = rewrite_parts(
        one_sheet(candidate(role="Data_x000D_Engineer")),
        lambda name, body: (
            body.replace(b"_x005F_x000D_", b"_x000D_")
            if name == "xl/sharedStrings.xml"
            else body
        ),
    )

    assert [c.role for c in candidates(data)] == ["Data Engineer"]


def test_names_keep_their_script_and_are_nfc_normalised() -> None:
    """Names in any script are kept exactly, with decomposed accents composed."""
    names = [
        "Zoe\u0308 Mu\u0308ller",
        "李雷",
        "Αλέξανδρος Παπαδόπουλος",
        "Priyá Ñúñez",
        "Ольга Иванова",
    ]
    data = one_sheet(
        *(
            candidate(name=name, email=f"p{i}@example.com")
            for i, name in enumerate(names)
        )
    )

    found = candidates(data)

    assert [c.name for c in found] == ["Zoë Müller", *names[1:]]


def test_extra_columns_keep_line_breaks_as_newlines() -> None:
    """An extra column's line breaks survive as LF, each line trimmed."""
    data = one_sheet(
        [*candidate(), "Line one \r\n  line two_x000D_"], header=[*HEADER, "Benefits"]
    )

    assert [dict(c.extra) for c in candidates(data)] == [
        {"benefits": "Line one\nline two"}
    ]


def test_a_stray_mark_far_below_is_cheap_and_not_a_candidate() -> None:
    """A mark at the sheet's last row outside the roster's columns adds no row."""
    data = xlsx(Sheet("Roster", roster(candidate())))
    data = _with_cell(data, "H1048576", "x")

    items = read(data, max_rows=1)

    assert [item.row for item in items] == [2]


def test_a_stray_mark_in_a_named_column_is_one_row_not_thousands() -> None:
    """A mark far below, in the Name column, is one row of errors at its real row."""
    data = _with_cell(xlsx(Sheet("Roster", roster(candidate()))), "A60000", "x")

    items = read(data)

    assert [item.row for item in items] == [2, 60000, 60000, 60000, 60000, 60000]


def test_a_cell_far_down_and_right_is_refused_before_it_exhausts_memory() -> None:
    """A tiny file with a cell at XFD1048576 is unreadable, not a crashed process."""
    data = _with_cell(xlsx(Sheet("Roster", roster(candidate()))), "XFD1048576", "x")

    with pytest.raises(RosterUnreadable) as unreadable:
        open_roster(data)

    assert "as far as row 1,048,576 and column XFD" in unreadable.value.reason


def _with_cell(data: bytes, reference: str, text: str) -> bytes:
    """The xlsx with one more inline-string cell, in its own row at the end."""
    row = "".join(char for char in reference if char.isdigit())
    value = f"<is><t>{text}</t></is>"
    cell = f'<row r="{row}"><c r="{reference}" t="inlineStr">{value}</c></row>'
    return rewrite_parts(
        data,
        lambda name, body: (
            body.replace(b"</sheetData>", cell.encode() + b"</sheetData>")
            if name.endswith("sheet1.xml")
            else body
        ),
    )


def test_max_rows_counts_only_non_blank_rows() -> None:
    """RosterTooLarge comes after max_rows data rows; blank rows do not count."""
    data = one_sheet(
        candidate(email="a@example.com"),
        [None] * 6,
        candidate(email="b@example.com"),
        candidate(email="c@example.com"),
    )

    assert len(read(data, max_rows=3)) == 3
    stream = opened(data, max_rows=2).rows()
    assert [item.row for item in [next(stream), next(stream)]] == [2, 4]
    with pytest.raises(RosterTooLarge):
        next(stream)


def test_an_unsaved_formula_result_says_how_to_fix_it() -> None:
    """A required cell whose formula result was never saved says to save in Excel."""
    data = one_sheet(
        one_value("Offer Amount", Formula("=100000*1.2")),
        candidate(email="b@example.com", amount=Formula("=100000*1.2", cached=120000)),
        candidate(
            email="c@example.com",
            role=Formula("=VLOOKUP(A4,Roles!A:B,2,0)", cached="#N/A"),
        ),
    )

    items = read(data)

    assert [(i.row, type(i).__name__) for i in items] == [
        (2, "RowError"),
        (3, "Candidate"),
        (4, "RowError"),
    ]
    assert items[0] == RowError(
        row=2,
        column="Offer Amount",
        message="Offer Amount is empty: the cell holds a formula whose result"
        " was never saved",
        fix="open and save the file in Excel so the formula results are stored",
    )
    assert items[2] == RowError(
        row=4,
        column="Role",
        message="Role shows the error #N/A instead of a value",
        value="#N/A",
        fix="correct the formula, or type the value itself",
    )


def test_an_unsaved_formula_in_xls_is_a_plain_empty_value() -> None:
    """Outside xlsx an unsaved formula cannot be told apart, so it is just empty."""
    data = xls(
        Sheet("Roster", roster(one_value("Location", Formula('=UPPER("berlin")'))))
    )

    found = errors(data)

    assert [(e.row, e.column, e.message) for e in found] == [
        (2, "Location", "Location is empty")
    ]


def test_csv_rows_span_quoted_line_breaks_and_may_be_short() -> None:
    """A quoted multi-line CSV field is one row; a short row's missing cells blank."""
    data = (
        "Name,Email,Role,Offer Amount,Start Date,Location,Notes\r\n"
        'Zoë Müller,zoe@example.com,Engineer,"120,000",15/01/2027,Berlin,'
        '"two\r\nlines"\r\n'
        "José Álvarez,jose@example.com,Designer\r\n"
    ).encode()

    items = read(data)

    assert isinstance(items[0], Candidate)
    assert (items[0].offer_amount, dict(items[0].extra)) == (
        Decimal("120000"),
        {"notes": "two\nlines"},
    )
    assert where([e for e in items if isinstance(e, RowError)]) == [
        (3, "Offer Amount"),
        (3, "Start Date"),
        (3, "Location"),
    ]


@pytest.mark.parametrize("delimiter", ["\t", ";", "|"])
def test_a_comma_in_every_amount_does_not_fool_the_delimiter(delimiter: str) -> None:
    """Tab-, semicolon- and bar-separated rosters with "$120,000" amounts read right."""
    data = csv_bytes(
        roster(
            candidate(amount="$120,000"),
            candidate(email="li@example.org", amount="$98,500"),
        ),
        delimiter=delimiter,
    )

    found = candidates(data)

    assert [c.offer_amount for c in found] == [Decimal("120000"), Decimal("98500")]


def test_an_unquoted_german_export_reads_its_amounts_and_dates() -> None:
    """Semicolons, "85.000,00 €" and 15.01.2027, unquoted, as German Excel saves."""
    data = (
        "Name;Email;Role;Offer Amount;Start Date;Location\r\n"
        "Jürgen Groß;j@example.com;Ingenieur;85.000,00 €;15.01.2027;München\r\n"
    ).encode()

    (found,) = candidates(data)

    assert (found.offer_amount, found.currency, found.start_date) == (
        Decimal("85000.00"),
        "EUR",
        date(2027, 1, 15),
    )


@pytest.mark.parametrize("name", [0, 12345, "12345", "  -  ", True])
def test_a_name_without_letters_is_a_row_error(name: Value) -> None:
    """A number (or a formula saved as 0) in Name never becomes "Dear 0,"."""
    (error,) = errors(one_sheet(one_value("Name", name)))

    assert (error.row, error.column, error.message) == (
        2,
        "Name",
        "a name must be text with letters in it",
    )
    assert error.fix is not None
    assert "formula" in error.fix


@pytest.mark.parametrize(
    ("header", "bad", "good"),
    [
        (
            "Name,Email,Role,Offer Amount,Start Date,Location",
            "Q Q,q@example.com,Eng,$120,000,2027-03-01,Remote",
            "Ana,ana@example.com,Eng,1,2027-03-01,Lima",
        ),
        (
            "Name,Email,Role,Location,Start Date,Offer Amount",
            "Q Q,q@example.com,Eng,Remote,2027-03-01,$120,000",
            "Ana,ana@example.com,Eng,Lima,2027-03-01,1",
        ),
    ],
)
def test_a_csv_row_wider_than_its_header_is_refused_not_read_askew(
    header: str, bad: str, good: str
) -> None:
    """An unquoted "$120,000" adds a cell: the row is refused, never "$120"."""
    data = f"{header}\r\n{bad}\r\n{good}\r\n"

    items = read(data.encode())

    assert items[0] == RowError(
        row=2,
        column=None,
        message="the row's values do not line up with the header's 6 columns"
        " (7 values, the amount perhaps split in two)",
        fix="put quotes around every value that holds the delimiter, like"
        ' "$120,000" in a comma-separated file, or export the sheet again as CSV',
    )
    assert isinstance(items[1], Candidate)


@pytest.mark.parametrize(
    ("row", "refused"),
    [
        ("Jo,jo@example.com,Eng,2027-04-01,London,$120,000", True),
        ("Jo,jo@example.com,Eng,2027-04-01,London,$120,000,", True),
        ("Jo,jo@example.com,Eng,2027-04-01,London,120,000 €", True),
        ("Jo,jo@example.com,Eng,2027-04-01,London,120,000 USD", True),
        ("Jo,jo@example.com,Eng,2027-04-01,London,120000,123", False),
        ('Jo, jo@example.com, Eng, 2027-04-01, London, "$120,000"', False),
        ('Jo,jo@example.com,Eng,2027-04-01,London,"$120,000",123', False),
    ],
)
def test_an_amount_split_by_a_comma_is_refused_even_when_the_width_fits(
    row: str, refused: bool
) -> None:
    """'$120' then '000' under an empty Notes column is refused, never "$120"."""
    header = "Name,Email,Role,Start Date,Location,Offer Amount,Notes"

    (item,) = read(f"{header}\r\n{row}\r\n".encode())

    assert isinstance(item, RowError) is refused, item


@pytest.mark.parametrize("column", ["Name", "Role", "Location", "Offer Amount"])
def test_spreadsheet_error_text_is_a_row_error(column: str) -> None:
    """ "#N/A" written as text by a CSV export is never a name, role or amount."""
    data = csv_bytes(roster(one_value(column, "#N/A")))

    (error,) = errors(data)

    assert (error.column, error.message, error.value) == (
        column,
        "the cell shows the error #N/A instead of a value",
        "#N/A",
    )


def test_error_cells_in_extra_columns_are_row_errors() -> None:
    """A VLOOKUP that saved #N/A in Hiring Manager is an error, not an empty cell."""
    header = [*HEADER, "Hiring Manager"]
    data = one_sheet(
        [*candidate(), Formula("=VLOOKUP(A2,M!A:B,2,0)", cached="#N/A")],
        header=header,
    )

    (error,) = errors(data)

    assert (error.row, error.column, error.value) == (2, "Hiring Manager", "#N/A")
    assert error.message == "Hiring Manager shows the error #N/A instead of a value"


def test_a_formula_error_in_the_currency_column_is_a_row_error() -> None:
    """=NA() in Currency never lets the default currency stand in for it."""
    data = one_sheet(
        [*candidate(), Formula("=NA()", cached="#N/A")],
        header=[*HEADER, "Currency"],
    )

    (error,) = errors(data)

    assert (error.column, error.value) == ("Currency", "#N/A")


def test_a_row_of_formula_errors_is_reported_not_skipped_as_blank() -> None:
    """A row of failed look-ups reads empty to calamine, but is no blank row."""
    failed: list[Value] = [Formula("=NA()", cached="#N/A") for _ in HEADER]
    data = one_sheet(candidate(), failed)

    found = errors(data)

    assert {(e.row, e.value) for e in found} == {(3, "#N/A")}
    assert len(found) == len(HEADER)


def test_unsaved_formulas_dragged_below_the_data_stay_blank_rows() -> None:
    """Uncalculated formulas dragged below the roster are skipped as blank rows."""
    dragged: list[Value] = [Formula('=IF(Z3="","",Z3)') for _ in HEADER]

    found = read(one_sheet(candidate(), dragged, dragged))

    assert [type(item).__name__ for item in found] == ["Candidate"]


def test_first_name_is_checked_like_a_name_and_may_be_left_empty() -> None:
    """A First Name column must hold letters; an empty one is simply absent."""
    header = [*HEADER, "First Name", "Hiring Manager"]
    data = one_sheet(
        [*candidate(), "Zoë", "Ana"],
        [*candidate(email="b@example.com"), None, "#REF!"],
        [*candidate(email="c@example.com"), 0, None],
        header=header,
    )

    items = read(data)

    assert isinstance(items[0], Candidate)
    assert dict(items[0].extra) == {"first_name": "Zoë", "hiring_manager": "Ana"}
    assert [
        (i.row, i.column, i.message) for i in items[1:] if isinstance(i, RowError)
    ] == [
        (3, "Hiring Manager", "the cell shows the error #REF! instead of a value"),
        (4, "First Name", "a name must be text with letters in it"),
    ]


def test_malformed_csv_is_unreadable() -> None:
    """A CSV the reader cannot parse (a field past the size limit) is unreadable."""
    data = csv_bytes(roster(candidate(), one_value("Role", "x" * 200_000)))

    with pytest.raises(RosterUnreadable, match="malformed near line 3"):
        read(data)


def test_large_roster_reads_every_row() -> None:
    """Twenty thousand rows stream through with exact row numbers at both ends."""
    rows = [
        candidate(name=f"Person {i}", email=f"person{i}@example.com", amount=50000 + i)
        for i in range(20_000)
    ]
    data = one_sheet(*rows)

    found = candidates(data)

    assert len(found) == 20_000
    assert (found[0].row, found[-1].row, found[-1].offer_amount) == (
        2,
        20_001,
        Decimal("69999"),
    )


def test_xls_serial_numbers_use_the_1900_date_system() -> None:
    """A date serial in an xls general-formatted cell is read in the 1900 system."""
    serial = int(excel_serial(date(2027, 1, 15)))
    data = xls(Sheet("Roster", roster(one_value("Start Date", serial))))

    assert [c.start_date for c in candidates(data)] == [date(2027, 1, 15)]
    assert date(1899, 12, 30) + timedelta(days=serial) == date(2027, 1, 15)
