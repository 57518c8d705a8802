"""The mailer against a real SMTP server: pooling, reconnects, reply classes,
TLS checks, logins (password, XOAUTH2), outbox."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import shlex
import ssl
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from offerletters import mailer as mailer_module
from offerletters.config import Settings
from offerletters.errors import DeliveryFailed
from offerletters.letters import Letter, letter_id_for, message_id_for
from offerletters.mailer import OAuthToken, OutboxMailer, SmtpMailer
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


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "sink.crt", tmp_path / "sink.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


async def test_an_unverifiable_certificate_is_refused_by_default(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """STARTTLS to a self-signed server fails unless certificate checks are off."""
    with running_sink(starttls=self_signed_context(tmp_path)) as sink:
        settings = make_settings(
            smtp_host=sink.host, smtp_port=sink.port, smtp_security="starttls"
        )
        mailer = SmtpMailer(settings)
        with pytest.raises(DeliveryFailed) as refused:
            await mailer.send(make_letter(1))
        await mailer.stop()

        trusting = SmtpMailer(
            settings.model_copy(update={"smtp_validate_certs": False})
        )
        await trusting.send(make_letter(2))
        await trusting.stop()

        assert refused.value.retriable
        assert "certificate" in refused.value.reply.lower()
        assert [r.recipients for r in sink.received] == [["candidate2@example.com"]]


async def test_a_password_logs_in_with_plain_auth(make_settings: MakeSettings) -> None:
    """Username and password log in (AUTH PLAIN) before the letter goes out."""
    with running_sink(auth=True) as sink:
        sink.recorder.passwords["hr@acme.example"] = "s3cret"
        settings = make_settings(
            smtp_host=sink.host,
            smtp_port=sink.port,
            smtp_username="hr@acme.example",
            smtp_password="s3cret",  # noqa: S106  # the test server's own login
            smtp_allow_plaintext_auth=True,
        )
        mailer = SmtpMailer(settings)
        await mailer.send(make_letter(1))
        await mailer.stop()

        assert sink.logins == [("PLAIN", "hr@acme.example")]
        assert len(sink.received) == 1


async def test_a_configured_oauth_token_logs_in_with_xoauth2(
    make_settings: MakeSettings,
) -> None:
    """OFFERLETTERS_SMTP_OAUTH_TOKEN logs in with AUTH XOAUTH2 as the username."""
    with running_sink(auth=True) as sink:
        sink.recorder.oauth_tokens["hr@acme.example"] = "ya29.token"
        settings = make_settings(
            smtp_host=sink.host,
            smtp_port=sink.port,
            smtp_username="hr@acme.example",
            smtp_oauth_token="ya29.token",  # noqa: S106  # the test server's token
            smtp_allow_plaintext_auth=True,
        )
        mailer = SmtpMailer(settings)
        await mailer.send(make_letter(1))
        await mailer.stop()

        assert sink.logins == [("XOAUTH2", "hr@acme.example")]
        assert len(sink.received) == 1


def token_command(tmp_path: Path, *tokens: str) -> tuple[str, Path]:
    """A command printing the given tokens in turn, one per run; and its run log."""
    runs = tmp_path / "runs"
    script = tmp_path / "token.py"
    script.write_text(
        "import pathlib, sys\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        "done = runs.read_text().count('.') if runs.exists() else 0\n"
        "runs.write_text('.' * (done + 1))\n"
        f"tokens = {list(tokens)!r}\n"
        "print(tokens[min(done, len(tokens) - 1)])\n"
    )
    return shlex.join([sys.executable, str(script)]), runs


def runs_of(runs: Path) -> int:
    return len(runs.read_text()) if runs.exists() else 0


async def test_a_refused_oauth_token_is_fetched_again_and_then_reused(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """The token command's token is kept for later connections; when the server
    refuses it the letter may be retried, and the next login runs the command
    again."""
    command, runs = token_command(tmp_path, "expired", "fresh")
    with running_sink(auth=True) as sink:
        sink.recorder.oauth_tokens["hr@acme.example"] = "fresh"
        settings = make_settings(
            smtp_host=sink.host,
            smtp_port=sink.port,
            smtp_connections=3,
            smtp_username="hr@acme.example",
            smtp_oauth_token_command=command,
            smtp_allow_plaintext_auth=True,
        )
        mailer = SmtpMailer(settings)
        with pytest.raises(DeliveryFailed) as refused:
            await mailer.send(make_letter(1))
        await asyncio.gather(*(mailer.send(make_letter(row)) for row in range(2, 8)))
        await mailer.stop()

        assert refused.value.retriable
        assert refused.value.reply.startswith("535")
        assert runs_of(runs) == 2
        assert len(sink.logins) == sink.recorder.connections - 1
        assert len(sink.received) == 6


async def test_a_command_token_is_kept_for_minutes_then_renewed(
    tmp_path: Path,
) -> None:
    """Within OAUTH_TOKEN_REUSE_S the command runs once; after it, again."""
    command, runs = token_command(tmp_path, "first", "second")
    now = [0.0]
    token = OAuthToken(command=command, clock=lambda: now[0])

    assert [await token(), await token()] == ["first", "first"]
    now[0] += mailer_module.OAUTH_TOKEN_REUSE_S + 1
    assert await token() == "second"
    assert runs_of(runs) == 2


async def test_a_failing_token_command_is_a_retriable_failure_that_hides_it(
    tmp_path: Path,
) -> None:
    """A command that exits non-zero fails the login without quoting the command."""
    secret = "--client-secret=hunter2"  # noqa: S105  # a made-up secret to look for
    token = OAuthToken(
        command=shlex.join([sys.executable, "-c", "raise SystemExit(3)", secret])
    )

    with pytest.raises(DeliveryFailed) as failed:
        await token()

    assert failed.value.retriable
    assert "exited with 3" in failed.value.reply
    assert "hunter2" not in failed.value.reply
