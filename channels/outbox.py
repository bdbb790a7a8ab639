"""The embedded default when no provider credentials are set: the message is recorded and printed.

The outbox row itself is the record (written by `send_message` before any channel is called); this channel
prints what would have gone out, so the demo and the operator see exactly that.
"""

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from channels.base import OutgoingMessage


class OutboxChannel:
    name = "outbox"

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)

    def send(self, message: OutgoingMessage, *, maybe_sent: bool = False) -> str:
        title = f"{message.channel.upper()} to {message.to} · {message.journey or ''} · message {message.message_id}"
        subject = f"{message.subject}\n\n" if message.subject else ""
        if not self._console.is_terminal:  # a log file: plain lines, no box drawing
            self._console.file.write(f"--- {title}\n{subject}{message.body}\n")
            self._console.file.flush()
        else:
            text = Text()  # plain Text: a body's brackets are not Rich markup
            text.append(subject, style="bold")
            text.append(message.body)
            self._console.print(Panel(text, title=Text(title), title_align="left", expand=False))
        return f"outbox-{message.message_id}"
