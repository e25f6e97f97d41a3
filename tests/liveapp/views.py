"""HTTP endpoints the live and replication tests drive a server process through."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

import django_perspective as dp
from django_perspective import live

from .models import Order
from .perspective_tables import KEYS


class Rollback(Exception):
    pass


@csrf_exempt
def orders(request: HttpRequest) -> JsonResponse:
    """One ORM operation per request: create, update, delete, rollback, burst, clear, bulk."""
    body = json.loads(request.body)
    op = body.pop("op")
    if "amount" in body:
        body["amount"] = Decimal(str(body["amount"]))
    if op == "create":
        return JsonResponse({"id": Order.objects.create(**body).pk})
    if op == "update":
        order = Order.objects.get(pk=body.pop("id"))
        for key, value in body.items():
            setattr(order, key, value)
        order.save()
    elif op == "delete":
        Order.objects.get(pk=body["id"]).delete()
    elif op == "rollback":
        try:
            with transaction.atomic():
                Order.objects.create(customer="ghost")
                Order.objects.filter(pk=body["id"]).update(customer="never")
                order = Order.objects.get(pk=body["id"])
                order.status = "closed"
                order.save()
                raise Rollback
        except Rollback:
            pass
    elif op == "burst":  # benchmarks: paced saves, each stamped with when it was made
        start = time.monotonic()
        for i in range(body["count"]):
            delay = start + i / body["rate"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            Order.objects.create(customer=f"{i}:{time.time():.6f}")
    elif op == "clear":
        Order.objects.all().delete()
    elif op == "bulk":
        made = Order.objects.bulk_create([Order(customer=f"bulk{i}") for i in range(body["count"])])
        live.refresh(Order, [order.pk for order in made])
    return JsonResponse({"ok": True})


@csrf_exempt
def stream(request: HttpRequest) -> JsonResponse:
    """``count`` replicated changes from ``start``: updates, removes, appends."""
    body = json.loads(request.body)
    start, count = body["start"], body["count"]
    for k in range(start, start + count):
        dp.update("replicated", [{"id": k % KEYS, "value": float(k), "label": f"v{k}"}])
        if k % 7 == 0:
            dp.remove("replicated", [(k * 13) % KEYS])
        if k % 10 == 0:
            dp.update("appended", [{"n": k}])
    return JsonResponse({"done": count})
