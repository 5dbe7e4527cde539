"""How measured figures read on the pages."""

from django.template.defaultfilters import filesizeformat


def figure(value: float, unit: str) -> str:
    """A metric's value with its unit, as a person reads it: sizes in KB/MB, times in ms."""
    if unit in ("bytes", "B"):
        return filesizeformat(value)
    if unit == "ms":
        return f"{value:.2f} ms"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{text} {unit}" if unit and unit != "ratio" else text
