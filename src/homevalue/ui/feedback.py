"""Feedback in the pages: the price page's "Is this price right?" box, and live accuracy.

`FeedbackBox` reports on the house the price page has priced, through the same
`homevalue.feedback` functions as `POST /v1/feedback`. `live_accuracy_panel` shows the
accuracy on reported sales beside the holdout's (the report page; the monitoring page can
show it too, over a recent span).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as widgets
import pandas as pd
from ipywidgets.widgets.widget_button import ButtonStyle
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import TextStyle

from homevalue import config, feedback
from homevalue.errors import FeedbackLimitError, FeedbackStoreError, ValidationError
from homevalue.feedback import REASONS, FeedbackSummary, LooksWrong, Report, Sale
from homevalue.ui import render
from homevalue.ui.page import Panel

if TYPE_CHECKING:
    from homevalue.predict import Prediction

# The report's parts as the box names them (its labels), for refusals in the page's words.
LABELS = {
    "sale.price": "Sale price",
    "sale.year": "Year sold",
    "sale.month": "Month sold",
    "looks_wrong.reason": "What looks wrong",
    "looks_wrong.comment": "Comment",
}
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
NOT_GIVEN = ""  # the dropdowns' "Not given": blank to homevalue.feedback
LABEL_WIDTH = "170px"  # as the house form's, so the boxes line up
NO_PRICE = (
    "Not recorded: the form has a field to fix, so the price shown is not this house's. "
    "Fix the marked field, then report."
)


def refusal(problems) -> str:
    """A ValidationError's problems in the box's words: "Sale price must be ..."."""
    return "; ".join(f"{LABELS.get(p.field, p.field)} {p.reason}" for p in problems)


def _message(css: str, text: str) -> str:
    # No role of its own: the result widget is the page's polite live region for it.
    return f'<div class="{css}">{render.esc(text)}</div>'


class FeedbackBox:
    """Report the actual sale price of the house on the page, or that its price looks wrong.

    `current()` gives the Prediction the page shows for the house in the form, or None when
    the form has a field to fix. Each page (viewer session) has its own sender id, which
    the flood limit per session counts. `guard` wraps the buttons' callbacks (the page's
    `guarded`: a bug shows a friendly line, never a traceback).
    """

    def __init__(
        self,
        card: Mapping,
        current: Callable[[], Prediction | None],
        *,
        path: Path | None = None,
        today: datetime | None = None,
        guard: Callable[[Callable], Callable] = lambda callback: callback,
    ):
        self.card, self.current, self.path = card, current, path
        self.client = f"page:{secrets.token_hex(8)}"
        self.receipts: list[feedback.Receipt] = []
        self.today = today
        layout = widgets.Layout()  # shared: one model for the five rows, as the form does
        common = {"layout": layout, "style": DescriptionStyle(description_width=LABEL_WIDTH)}
        typed = {"layout": layout, "style": TextStyle(description_width=LABEL_WIDTH)}
        low, high = feedback.price_bounds(card)
        self.sale_price = widgets.Text(
            description="Sale price ($)",
            placeholder="e.g. 182,000",
            tooltip=f"What the house sold for, in dollars ({render.money(low)} to "
            f"{render.money(high)})",
            **typed,
        )
        this_year = (today or datetime.now(UTC)).year
        years = range(this_year, int(card["data"]["sale_years"][0]) - 1, -1)
        not_given = [("Not given", NOT_GIVEN)]
        self.sale_year = widgets.Dropdown(
            description="Year sold",
            options=not_given + [(str(y), y) for y in years],
            value=NOT_GIVEN,
            **common,
        )
        self.sale_month = widgets.Dropdown(
            description="Month sold",
            options=not_given + [(m, n) for n, m in enumerate(MONTHS, 1)],
            value=NOT_GIVEN,
            **common,
        )
        self.reason = widgets.Dropdown(
            description="What looks wrong",
            options=[("Choose a reason", NOT_GIVEN)] + [(v, k) for k, v in REASONS.items()],
            value=NOT_GIVEN,
            **common,
        )
        limit = config.FEEDBACK_COMMENT_MAX_CHARS
        self.comment = widgets.Text(
            description="Comment (optional)",
            placeholder=f"a sentence or two, at most {limit} characters",
            **typed,
        )
        buttons = {"style": ButtonStyle(), "layout": {"width": "auto"}}
        self.sale_button = widgets.Button(
            description="Report the actual sale price", icon="check", **buttons
        )
        self.wrong_button = widgets.Button(
            description="This price looks wrong", icon="flag", **buttons
        )
        self.sale_button.add_class("hv-report-sale")
        self.wrong_button.add_class("hv-report-wrong")
        # Visible, and the page's polite live region for it: the confirmation or the refusal
        # is said once, where the keyboard user already is.
        self.result = widgets.HTML()
        for css in ("hv-live", "hv-feedback-result"):
            self.result.add_class(css)
        self.sale_button.on_click(guard(self._report_sale))
        self.wrong_button.on_click(guard(self._report_wrong))

    def children(self) -> list[widgets.Widget]:
        """The panel's widgets: a hint, the two reports side by side, the result."""
        intro = widgets.HTML(
            "<p class='hv-hint'>Know what this house sold for, or think its price is off? "
            "Tell us: a report is kept with the house and the price shown, and reported sales "
            "measure the model's accuracy on real sales (Model report). Prices in whole "
            "dollars, as sold.</p>"
        )
        sale = widgets.VBox(
            [
                widgets.HTML("<h3>It sold</h3>"),
                *(self.sale_price, self.sale_year, self.sale_month, self.sale_button),
            ]
        )
        wrong = widgets.VBox(
            [widgets.HTML("<h3>It looks wrong</h3>"), self.reason, self.comment, self.wrong_button]
        )
        for part in (sale, wrong):
            part.layout = {"flex": "1 1 380px"}
        both = widgets.HBox([sale, wrong], layout={"flex_flow": "row wrap"})
        both.add_class("hv-feedback")
        return [intro, both, self.result]

    def describe(self) -> str:
        low, high = feedback.price_bounds(self.card)
        return (
            f"report the actual sale price ({render.money(low)} to {render.money(high)}, year "
            f"and month optional) or that the price looks wrong ({len(REASONS)} reasons, "
            f"a comment of at most {config.FEEDBACK_COMMENT_MAX_CHARS} characters); at most "
            f"{config.feedback_limits().per_session_per_hour} reports an hour from one page"
        )

    # --- reacting ---------------------------------------------------------------------

    def _report_sale(self, _button=None) -> None:
        price, year, month = self.sale_price.value, self.sale_year.value, self.sale_month.value
        self.report(
            lambda: feedback.check_sale(price, year, month, card=self.card, today=self.today)
        )

    def _report_wrong(self, _button=None) -> None:
        if self.reason.value == NOT_GIVEN:
            self.result.value = _message(
                "hv-notice", "Not recorded: choose what looks wrong first."
            )
            return
        self.report(lambda: feedback.check_looks_wrong(self.reason.value, self.comment.value))

    def report(self, checked: Callable[[], Report]) -> feedback.Receipt | None:
        """Check the report, keep it against the page's current price, and say what came of
        it in the result region; the fields are cleared once it is kept."""
        prediction = self.current()
        if prediction is None:
            self.result.value = _message("hv-notice", NO_PRICE)
            return None
        try:
            report = checked()
            sent = [r.recorded_at for r in self.receipts]
            feedback.check_recent(sent, config.feedback_limits().per_session_per_hour, "page")
            receipt = feedback.record(
                prediction, report, source="page", client=self.client, path=self.path
            )
        except ValidationError as error:
            self.result.value = _message("hv-notice", f"Not recorded: {refusal(error.problems)}.")
            return None
        except (FeedbackLimitError, FeedbackStoreError) as error:
            self.result.value = _message("hv-notice", f"Not recorded: {error}.")
            return None
        self.receipts.append(receipt)
        self.result.value = _message("hv-ok", self._thanks(report, prediction))
        self._clear(report)
        return receipt

    def _thanks(self, report: Report, p: Prediction) -> str:
        shown = (
            f"this page's price of {render.money(p.price)} (range {render.money(p.low)} – "
            f"{render.money(p.high)}, model {p.model_version})"
        )
        if isinstance(report, Sale):
            when = ""
            if report.year:
                month = f"{MONTHS[report.month - 1]} " if report.month else ""
                when = f" in {month}{report.year}"
            return (
                f"Thank you: the sale for {render.money(report.price)}{when} was recorded "
                f"against {shown}."
            )
        return f"Thank you: “{REASONS[report.reason]}” was recorded against {shown}."

    def _clear(self, report: Report) -> None:
        if isinstance(report, Sale):
            self.sale_price.value = ""
            self.sale_year.value = self.sale_month.value = NOT_GIVEN
        elif isinstance(report, LooksWrong):
            self.reason.value, self.comment.value = NOT_GIVEN, ""


# --- live accuracy --------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def holdout_figures(card: Mapping) -> dict:
    """The holdout's figures that reported sales are compared with (from the card)."""
    return {
        "sales": int(card["metrics"]["n_test"]),
        "median_ape_percent": float(card["metrics"]["median_ape_percent"]),
        "inside_share": float(card["interval"]["coverage_test"]),
        "level": float(card["interval"]["level"]),
    }


def live_accuracy_frame(s: FeedbackSummary, card: Mapping) -> pd.DataFrame:
    """Reported sales beside the holdout's test sales, measure by measure."""
    h = holdout_figures(card)
    live_ape = None if s.median_ape_percent is None else s.median_ape_percent / 100
    return pd.DataFrame(
        [
            ("Sales", f"{s.sales:,}", f"{h['sales']:,}"),
            ("Median error (absolute)", _pct(live_ape), _pct(h["median_ape_percent"] / 100)),
            (f"Inside the {h['level']:.0%} range", _pct(s.inside_share), _pct(h["inside_share"])),
        ],
        columns=["Measure", "Reported sales", "Test sales (holdout)"],
    )


def _scope(s: FeedbackSummary) -> str:
    model = f"model {s.model_version}" if s.model_version else "every model version"
    since = f" since {s.since:%Y-%m-%d %H:%M} UTC" if s.since else ""
    return f"{model}{since}"


def live_accuracy_summary(s: FeedbackSummary, card: Mapping) -> str:
    """The figures in a sentence (for logs, tests and the monitoring page's text)."""
    h = holdout_figures(card)
    wrong = ", ".join(f"{code} {n}" for code, n in s.looks_wrong.items() if n) or "none"
    live = (
        "no reported sales"
        if not s.sales
        else f"{s.sales:,} reported sales, median error {s.median_ape_percent:.1f}%, "
        f"{_pct(s.inside_share)} inside the range"
    )
    return (
        f"{live} ({_scope(s)}); holdout: {h['sales']:,} test sales, median error "
        f"{h['median_ape_percent']:.1f}%, {_pct(h['inside_share'])} inside; "
        f"looks wrong: {wrong}"
    )


def live_accuracy_html(s: FeedbackSummary, card: Mapping) -> str:
    """What the page shows: the comparison table, or a plain empty state, and the "looks
    wrong" reports by reason."""
    if s.sales:
        lead = (
            f"{s.sales:,} sale prices reported on the price page and through the API "
            f"({_scope(s)}), each against the price and range the model gave: "
            "the same measures as on the test sales."
        )
        body = render.table(live_accuracy_frame(s, card), caption="Accuracy on reported sales")
        caveat = (
            "A sale reported after 2010 is in later dollars than the model's prices, so its "
            "error includes the change in prices since."
        )
        html = f'<p class="hv-lead">{render.esc(lead)}</p>{body}'
        html += f'<p class="hv-hint">{render.esc(caveat)}</p>'
    else:
        html = (
            '<p class="hv-lead hv-feedback-empty">'
            + render.esc(
                f"No sale price has been reported yet ({_scope(s)}). When viewers report what "
                "a priced house sold for (“Is this price right?” on the price page, or "
                "POST /v1/feedback), the model's accuracy on those sales shows here beside "
                "the test sales'."
            )
            + "</p>"
        )
    if s.looks_wrong_total:
        items = (f"{REASONS[code]}: {n:,}" for code, n in s.looks_wrong.items() if n)
        html += (
            f"<p>{render.esc(f'“This price looks wrong”: {s.looks_wrong_total:,} reports')}"
            f"</p>{render.bullet_list(items, css='hv-feedback-reasons')}"
        )
    return html


def live_accuracy_panel(
    card: Mapping,
    *,
    since: datetime | timedelta | None = None,
    path: Path | None = None,
    model_version: str | None = None,
) -> Panel:
    """Accuracy on reported sales beside the holdout's, read from the store now.

    The panel's text (what nbval compares) names the holdout's figures and not the live
    ones, which differ from one machine's store to another's.
    """
    h = holdout_figures(card)
    try:
        found = feedback.summary(since, path=path, model_version=model_version)
        body = live_accuracy_html(found, card)
    except FeedbackStoreError as error:
        body = render.notice(f"The reported sales cannot be read now: {error}.")
    text = (
        "sales reported on the price page and the API, read when the page opens, beside the "
        f"holdout's {h['sales']:,} test sales (median error {h['median_ape_percent']:.1f}%, "
        f"{_pct(h['inside_share'])} inside the {h['level']:.0%} range)"
    )
    html = widgets.HTML(body, layout={"width": "100%"})
    return Panel([html], title="Accuracy on reported sales", summary=lambda: text)
