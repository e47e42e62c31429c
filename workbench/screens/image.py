"""Image: one picture with its mask overlay and legend, composition, references and every run's
caption with its scores; next/previous without leaving the screen."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from engine.store.reference_flags import ReferenceFlag
from engine.store.views import ImageDetail, image_detail
from workbench.screens.reference_flag import ask_and_flag, references_text
from workbench.widgets.picture import Picture, group_colour

SCORE_COLUMNS = (("Bleu_1", "BLEU-1"), ("Bleu_4", "BLEU-4"), ("METEOR", "METEOR"), ("ROUGE_L", "ROUGE-L"), ("CIDEr", "CIDEr"))
"""The per-image scores shown under each caption, with readable names."""


@dataclass
class DetailLoaded(Message):
    index: int
    detail: ImageDetail | None


def legend(groups: list[str], present: set[int] | None = None) -> Text:
    """Colour swatches of the class groups (the mask's palette); absent groups dimmed."""
    text = Text()
    for i, name in enumerate(groups):
        r, g, b = group_colour(i)
        dim = present is not None and i not in present
        text.append("██ ", style=f"rgb({r},{g},{b})")
        text.append(name + "\n", style="dim" if dim else "")
    return text


def composition_table(data: dict[str, object]) -> Table:
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for column, justify in (("class", "left"), ("area %", "right"), ("regions", "right"), ("centre", "right"), ("position", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for part in data.get("parts", []):  # type: ignore[attr-defined]
        x, y = part["centre"]
        table.add_row(part["name"], f"{part['area']:.1f}", str(part["regions"]), f"{x:.2f},{y:.2f}", part["position"] or "dominant")
    return table


def generated_captions(detail: ImageDetail, blind: bool = False) -> Group:
    """Every run's caption in full (wrapped on its own lines, indented under the run's name, never
    squeezed into a column), its scores under readable names below it, and a minimum-Bayes-risk
    run's candidates."""
    parts: list[RenderableType] = []
    for k, gen in enumerate(detail.generations):
        head = Text(f"{k + 1}. " if blind else f"{gen.run}", style="bold")
        if gen.oracle and not blind:
            head.append("  ORACLE scenes", style="bold reverse")
        body = Text(gen.text or "(empty caption)")
        if not blind:
            scores = "  ".join(f"{label} {gen.scores[m]:.2f}" for m, label in SCORE_COLUMNS if m in gen.scores)
            body.append(f"\n{scores or 'not scored yet'}", style="dim")
            if gen.candidates:
                body.append("\ncandidates (mean CIDEr-D against the others; the highest is kept):", style="dim")
                for candidate, score in sorted(gen.candidates, key=lambda c: -c[1]):
                    body.append(f"\n  {score:5.2f}  {candidate}", style="dim")
        parts += [head, Padding(body, (0, 0, 1 if k + 1 < len(detail.generations) else 0, 2))]
    return Group(*parts)


class ImageScreen(Screen[None]):
    """One image: every run's caption in full with its per-image scores (first: g scrolls back to
    them), the references, the composition and its prompt, the picture (m cycles the mask overlay
    of each segmentation run) and the class legend. n / p (or → / ←) move through the list it was
    opened from. f flags a reference (misspelt, duplicated, not this image), for everyone to see."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="image.back"),
        Binding("n,right", "step(1)", "Next", id="image.next"),
        Binding("p,left", "step(-1)", "Previous", id="image.previous"),
        Binding("m", "mask", "Mask", id="image.mask"),
        Binding("g", "captions", "Captions", id="image.captions"),
        Binding("f", "flag_reference", "Flag ref", id="image.reference_flag"),
    ]

    def __init__(self, image_ids: list[int], index: int) -> None:
        super().__init__()
        self.image_ids = image_ids
        self.index = index
        self.detail: ImageDetail | None = None
        self.flags: dict[str, list[ReferenceFlag]] = {}
        self.mask_choice = 0
        """0: no overlay; k: the k-th segmentation run's mask."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="image-title", classes="bar")
        with Horizontal(id="image-body"):
            yield Picture(self.app.session.images, id="picture")  # type: ignore[attr-defined]
            with VerticalScroll(id="image-info"):
                yield Static("", id="image-generations")
                yield Static("", id="image-references")
                yield Static("", id="image-composition")
                yield Static("", id="image-legend")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load(self.index)

    @work(thread=True, exit_on_error=False, exclusive=True, group="image-detail")
    def load(self, index: int) -> None:
        db = self.app.session.db  # type: ignore[attr-defined]
        image_id = self.image_ids[index]
        self.post_message(DetailLoaded(index, image_detail(db, image_id)))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        if message.index != self.index:
            return
        self.detail = message.detail
        self.flags = message.detail.flags if message.detail is not None else {}
        if self.detail is None:
            self.query_one("#image-title", Static).update("this image is no longer in the store")
            return
        if self.mask_choice > len(self.detail.masks):
            self.mask_choice = 0
        self.show()

    def show(self) -> None:
        d = self.detail
        if d is None:
            return
        im = d.image
        groups = self.app.session.config.group_names  # type: ignore[attr-defined]
        mask_run, mask_path = d.masks[self.mask_choice - 1] if self.mask_choice else (None, None)
        size = f"{im.width}×{im.height}" if im.width else "size unknown"
        overlay = f"mask {mask_run}" if mask_run else ("no mask yet (a `segment` job makes them)" if not d.masks else "m: mask overlay")
        predicted = ""
        if d.prediction is not None:
            _, scene, probability, _ = d.prediction
            predicted = f" (predicted {scene} {probability:.2f}{'' if scene == im.scene else ', WRONG' if im.scene else ''})"
        self.query_one("#image-title", Static).update(
            f"{self.index + 1}/{len(self.image_ids)}  {im.filename} · {im.split or 'no split'} · {im.scene or 'no scene'}{predicted} · "
            f"{im.status}{' (' + im.status_detail + ')' if im.status_detail else ''} · {size} · {overlay}")
        session = self.app.session  # type: ignore[attr-defined]
        picture = self.query_one(Picture)
        path = session.resolve(d.root, im.path) if im.status == "ok" else None
        picture.show(path, session.workspace_file(mask_path) if mask_path else None,
                     description=f"{session.resolve(d.root, im.path)}\n(images are off: --images auto shows them)"
                     if im.status == "ok" else f"{im.status}: {im.status_detail or im.path}")
        present = {p["index"] for p in d.composition["parts"]} if d.composition else None
        self.query_one("#image-legend", Static).update(Group(Text("Class groups", style="bold"), legend(groups, present))
                                                       if mask_run else "")
        comp: RenderableType
        if d.composition is not None:
            comp = Group(Text(f"Composition ({d.composition_run})", style="bold"), composition_table(d.composition),
                         Text("\nPrompt", style="bold"), Text(d.prompt or ""))
        else:
            comp = Text("No composition yet: a `compose` job makes one from masks.", style="italic")
        self.query_one("#image-composition", Static).update(comp)
        self.query_one("#image-references", Static).update(references_text(d.references, self.flags, repeated=True))
        gens: RenderableType = (Group(Text("Generated captions", style="bold"), generated_captions(d)) if d.generations
                else Text("No generated captions yet: `generate`, `baseline-knn` or `baseline-scene` jobs make them.\n", style="italic"))
        self.query_one("#image-generations", Static).update(gens)

    def action_step(self, delta: int) -> None:
        new = self.index + delta
        if 0 <= new < len(self.image_ids):
            self.index = new
            self.load(new)
        else:
            self.notify("first image of the list" if new < 0 else "last image of the list", timeout=1.5)

    def action_captions(self) -> None:
        """Scroll back to the generated captions (the first thing in the pane)."""
        self.query_one("#image-info", VerticalScroll).scroll_to_widget(self.query_one("#image-generations", Static), top=True)

    def action_flag_reference(self) -> None:
        if self.detail is None:
            return
        detail = self.detail

        def saved(flags: dict[str, list[ReferenceFlag]]) -> None:
            if self.detail is detail:
                self.flags = flags
                self.query_one("#image-references", Static).update(references_text(detail.references, flags, repeated=True))

        ask_and_flag(self, detail, self.flags, saved)

    def action_mask(self) -> None:
        if self.detail is None or not self.detail.masks:
            self.notify("no mask for this image yet: a `segment` job makes them", timeout=3)
            return
        self.mask_choice = (self.mask_choice + 1) % (len(self.detail.masks) + 1)
        self.show()
