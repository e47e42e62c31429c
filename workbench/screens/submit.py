"""Submit a job: pick a kind, fill the form its params dataclass describes, queue it.

Values are validated exactly as ``workbench jobs submit`` validates them; an error is shown under
the field it names and nothing is queued.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.errors import WorkbenchError
from engine.jobs.base import describe_params
from engine.jobs.registry import KINDS, get_kind


def field_at_fault(message: str, names: list[str]) -> str | None:
    """The parameter an error message names (``name=...``, ``'name'``, ``parameter name``)."""
    for name in sorted(names, key=len, reverse=True):
        if f"{name}=" in message or f"'{name}'" in message or f"parameter {name}" in message or message.split(": ")[-1].startswith(name):
            return name
    return None


class SubmitModal(ModalScreen[int | None]):
    """Queue a job of any kind; dismissed with the new job's id."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "Queue")]

    def __init__(self, kind: str = "evaluate") -> None:
        super().__init__()
        self.kind = kind if kind in KINDS else sorted(KINDS)[0]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -wide", id="submit-dialog"):
            yield Label("Queue a job", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("kind", classes="form-label")
                yield Select([(k, k) for k in sorted(KINDS) if k != "noop"], value=self.kind, allow_blank=False, compact=True, id="submit-kind")
            fields = VerticalScroll(id="submit-fields")
            fields.can_focus = False  # tab goes from field to field, not to the scroll area
            yield fields
            yield Static("", id="submit-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Queue (ctrl+s)", id="submit", variant="primary", compact=True, action="screen.submit")
                yield Button("Cancel (esc)", id="cancel", compact=True, action="screen.cancel")

    async def on_mount(self) -> None:
        await self.build_fields()

    async def build_fields(self) -> None:
        box = self.query_one("#submit-fields", VerticalScroll)
        await box.remove_children()
        widgets = []
        for name, type_name, default, help_text in describe_params(get_kind(self.kind).params):
            required = default == "(required)"
            row = Vertical(
                Horizontal(Label(name + (" *" if required else ""), classes="form-label"),
                           Input(placeholder="required" if required else default or "(empty)", compact=True, id=f"param-{name}",
                                 tooltip=f"{type_name}: {help_text}"),
                           classes="form-row"),
                Static(help_text, classes="form-help"),
                Static("", classes="form-error", id=f"error-{name}"),
                classes="form-field",
            )
            widgets.append(row)
        await box.mount_all(widgets)
        self.query_one("#submit-error", Static).update("")
        first = self.query("#submit-fields Input")
        if first:
            first.first().focus()

    @on(Select.Changed, "#submit-kind")
    async def kind_changed(self, event: Select.Changed) -> None:
        if event.value != self.kind:
            self.kind = str(event.value)
            await self.build_fields()

    def values(self) -> dict[str, str]:
        return {i.id.removeprefix("param-"): i.value.strip() for i in self.query(Input)
                if i.id and i.id.startswith("param-") and i.value.strip()}

    def action_submit(self) -> None:
        from engine.jobs.queue import submit

        raw = self.values()
        for err in self.query(".form-error"):
            err.update("")  # type: ignore[attr-defined]
        try:
            get_kind(self.kind).parse(raw)
            session = self.app.session  # type: ignore[attr-defined]
            job_id = submit(session.workspace, self.kind, raw, start_runner=session.start_runner)
        except (WorkbenchError, ValueError) as exc:
            message = str(exc)
            names = [n for n, *_ in describe_params(get_kind(self.kind).params)]
            name = field_at_fault(message, names)
            if name is not None:
                self.query_one(f"#error-{name}", Static).update(message)
                self.query_one(f"#param-{name}", Input).focus()
            self.query_one("#submit-error", Static).update(message)
            return
        self.dismiss(job_id)

    def action_cancel(self) -> None:
        self.dismiss(None)
