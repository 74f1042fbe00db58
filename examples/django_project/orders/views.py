from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Order
from .tasks import confirm_order


class PaymentDeclined(Exception):
    pass


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    try:
        with transaction.atomic():
            order = Order.objects.create(item=request.POST["item"])
            # sent when the transaction commits; never if it rolls back (the order would not exist)
            confirm_order.delay_on_commit(order.pk)
            if request.POST.get("card") == "declined":
                raise PaymentDeclined
    except PaymentDeclined:
        return JsonResponse({"error": "payment declined"}, status=402)
    return JsonResponse({"order": order.pk}, status=201)
