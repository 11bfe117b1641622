"""One way to turn a report's matplotlib figure into PNG bytes (the verify, loss and evaluation pictures), so
that every picture is written the same way and its figure is always closed (matplotlib keeps open figures)."""

from __future__ import annotations

import io


def png_bytes(fig) -> bytes:
    """``fig`` as PNG bytes; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()
