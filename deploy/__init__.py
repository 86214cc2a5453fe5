"""Raspberry Pi deployment of the edge runtime (`make deploy`); see deploy/README-section.md."""
