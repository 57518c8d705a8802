"""The mailer against a real SMTP server: pooling, reconnects, reply classes, outbox."""

from __future__ import annotations

import asyncio
import email
import email.policy

import pytest

from offerletters import mailer as mailer_module
from offerletters.config import Settings
from offerletters.errors import DeliveryFailed
from offerletters.letters import Letter, letter_id_for, message_id_for
from offerletters.mailer import OutboxMailer, SmtpMailer
from tests.conftest import MakeSettings
from tests.support.smtp import SmtpSink, running_sink


def make_letter(row: int, recipient: str | None = None) -> Letter:
    letter_id = letter_id_for("batch-test", row)
    return Letter(
        letter_id=letter_id,
        batch_id="batch-test",
        row=row,
        recipient=recipient or f"candidate{row}@example.com",
        recipient_name=f"Candidate {row}",
        subject="Your offer",
        text=f"Hello candidate {row}",
        html=f"<p>Hello candidate {row}</p>",
        message_id=message_id_for(letter_id, "acme.example"),
    )


async def test_letters_share_a_bounded_pool_of_connections(
    make_settings: MakeSettings, smtp: SmtpSink
) -> None:
    """Many letters go over at most `smtp_connections` connections, each reused."""
    settings = make_settings(
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_connections=3
    )
    mailer = SmtpMailer(settings)

    await asyncio.gather(*(mailer.send(make_letter(row)) for row in range(40)))
    await mailer.stop()

    assert len(smtp.received) == 40
    assert smtp.recorder.connections <= 3


async def test_a_dropped_connection_is_reopened(
    smtp_settings: Settings, smtp: SmtpSink
) -> None:
    """After the server drops every connection, the next letter reconnects."""
    mailer = SmtpMailer(smtp_settings)
    await mailer.send(make_letter(1))

    smtp.stop_listening()
    smtp.start()
    with pytest.raises(DeliveryFailed) as dropped:
        await mailer.send(make_letter(2))
    await mailer.send(make_letter(3))
    await mailer.stop()

    assert dropped.value.retriable
    assert [r.recipients for r in smtp.received] == [
        ["candidate1@example.com"],
        ["candidate3@example.com"],
    ]


async def test_a_5xx_refusal_is_permanent_with_the_reply(
    smtp_settings: Settings, smtp: SmtpSink
) -> None:
    """A 550 for an address fails that letter for good, quoting the server."""
    smtp.refuse("gone@example.com", "550 5.1.1 Mailbox does not exist")
    mailer = SmtpMailer(smtp_settings)

    with pytest.raises(DeliveryFailed) as refused:
        await mailer.send(make_letter(1, "gone@example.com"))
    await mailer.send(make_letter(2))
    await mailer.stop()

    assert not refused.value.retriable
    assert refused.value.reply == "550 5.1.1 Mailbox does not exist"
    assert len(smtp.received) == 1


async def test_a_4xx_reply_is_retriable(
    smtp_settings: Settings, smtp: SmtpSink
) -> None:
    """A 451 deferral is reported as worth trying again."""
    smtp.judge_with(lambda _address: "451 4.3.0 Try again later")
    mailer = SmtpMailer(smtp_settings)

    with pytest.raises(DeliveryFailed) as deferred:
        await mailer.send(make_letter(1))
    await mailer.stop()

    assert deferred.value.retriable
    assert deferred.value.reply.startswith("451")


async def test_no_server_is_a_retriable_connection_failure(
    make_settings: MakeSettings,
) -> None:
    """A refused connection is transient and names the server it tried."""
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=1, smtp_timeout_s=2)
    mailer = SmtpMailer(settings)

    with pytest.raises(DeliveryFailed) as failed:
        await mailer.send(make_letter(1))

    assert failed.value.retriable
    assert "127.0.0.1:1" in failed.value.reply


async def test_the_outbox_holds_one_parseable_eml_per_letter(
    make_settings: MakeSettings,
) -> None:
    """Without SMTP, each letter becomes `<letter id>.eml` in the outbox folder."""
    settings = make_settings()
    mailer = OutboxMailer(settings)
    letter = make_letter(7)

    await mailer.send(letter)

    path = settings.outbox_dir / f"{letter.letter_id}.eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Message-ID"] == letter.message_id
    assert message["To"] == "Candidate 7 <candidate7@example.com>"
    assert list(settings.outbox_dir.iterdir()) == [path]


async def test_an_international_address_goes_out_with_smtputf8(
    smtp_settings: Settings, smtp: SmtpSink
) -> None:
    """A mailbox like josé@ is delivered when the server offers SMTPUTF8."""
    mailer = SmtpMailer(smtp_settings)

    await mailer.send(make_letter(1, "josé@example.com"))
    await mailer.stop()

    assert smtp.received[0].recipients == ["josé@example.com"]
    assert "josé@example.com".encode() in smtp.received[0].raw


async def test_an_international_address_without_smtputf8_fails_clearly(
    make_settings: MakeSettings,
) -> None:
    """Without SMTPUTF8 on the server, that letter fails for good and says why."""
    with running_sink(smtputf8=False) as plain:
        settings = make_settings(smtp_host=plain.host, smtp_port=plain.port)
        mailer = SmtpMailer(settings)

        with pytest.raises(DeliveryFailed) as refused:
            await mailer.send(make_letter(1, "josé@example.com"))
        await mailer.send(make_letter(2))
        await mailer.stop()

        assert not refused.value.retriable
        assert "SMTPUTF8" in refused.value.reply
        assert len(plain.received) == 1


async def test_an_idle_connection_closed_by_the_server_is_reopened_unseen(
    smtp_settings: Settings, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection the server dropped while idle is reopened unseen."""
    monkeypatch.setattr(mailer_module, "IDLE_PROBE_AFTER_S", 0.0)
    mailer = SmtpMailer(smtp_settings)
    await mailer.send(make_letter(1))

    smtp.stop_listening()
    smtp.start()
    await mailer.send(make_letter(2))
    await mailer.stop()

    assert len(smtp.received) == 2


async def test_a_hang_up_after_acceptance_counts_as_delivered(
    smtp_settings: Settings, smtp: SmtpSink
) -> None:
    """A server that says 250 and then drops the line has the letter: no resend."""
    smtp.recorder.hang_up_after_data = True
    mailer = SmtpMailer(smtp_settings)

    reply = await mailer.send(make_letter(1))
    await asyncio.sleep(0.2)
    await mailer.stop()

    assert "accepted" in reply
    assert len(smtp.received) == 1
