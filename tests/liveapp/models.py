"""A model for the live-table and replication tests."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    customer = models.CharField(max_length=50)
    status = models.CharField(max_length=20, default="open")
    amount = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    placed = models.DateField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)
