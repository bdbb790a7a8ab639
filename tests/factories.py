"""Sample payloads, shaped like what a shop's backend posts."""

from typing import Any


def order_payload(order_id: str = "1001", customer_id: str = "c_42", total: str = "129.90", **customer: Any) -> dict:
    return {
        "order_id": order_id,
        "placed_at": "2026-11-20T15:04:05Z",
        "currency": "USD",
        "total": total,
        "coupon_code": None,
        "customer": {
            "id": customer_id,
            "first_name": "John",
            "last_name": "Doe",
            "email": "john@example.com",
            "phone": "+14155550100",
            "timezone": "America/Los_Angeles",
            "sms_consent": True,
            "email_consent": True,
        }
        | customer,
        "items": [
            {
                "sku": "JEANS-32",
                "name": "Slim jeans",
                "category": "jeans",
                "quantity": 1,
                "unit_price": "59.95",
                "size": "32",
                "color": "indigo",
                "url": "https://shop.example/p/jeans-32",
            }
        ],
    }
