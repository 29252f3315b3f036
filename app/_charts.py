"""How the app draws its charts."""

CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
                "toImageButtonOptions": {"format": "png", "scale": 2}}
"""Plotly's config for every chart of the app."""
