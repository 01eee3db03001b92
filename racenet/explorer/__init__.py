"""The web explorer every node serves at `/explorer` (docs/explorer.md): server-rendered pages of the chain,
the Race, inference, rewards, tokenomics, pricing, governance and training, with inline SVG plots and a small
script that keeps the height and latest blocks live."""

from racenet.explorer.routes import explorer_router

__all__ = ["explorer_router"]
