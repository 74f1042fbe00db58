"""Tasks of the orders app: found by ``app.autodiscover_tasks()``; they use the ORM."""

import os

from django.db import connection

from celeriac import shared_task

from .models import Order


@shared_task(ignore_result=False)
def confirm_order(order_id: int) -> int:
    # sent with delay_on_commit: the row exists when this runs (it would not, sent before the commit)
    order = Order.objects.get(pk=order_id)
    order.confirmed = True
    order.save(update_fields=["confirmed"])
    return order.pk


@shared_task(ignore_result=False)
def connection_state() -> dict[str, object]:
    """Whether this task found its thread's database connection open, then uses it."""
    was_open = connection.connection is not None
    Order.objects.count()
    return {"was_open": was_open, "pid": os.getpid()}
