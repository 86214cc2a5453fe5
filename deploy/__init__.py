"""Raspberry Pi deployment of the edge runtime (`make deploy`); see README.md, "Raspberry Pi"."""
