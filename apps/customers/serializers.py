from django_countries.serializer_fields import CountryField
from rest_framework import serializers

from apps.common.money import CURRENCY_CHOICES
from apps.common.serializers import ModelSerializer

from .models import Contact, Customer


class CustomerSerializer(ModelSerializer):
    country = CountryField(required=False, allow_blank=True)
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, required=False)
    contacts_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Customer
        fields = [
            "id",
            "kind",
            "name",
            "company",
            "email",
            "billing_email",
            "phone",
            "tax_id",
            "currency",
            "status",
            "address_line1",
            "address_line2",
            "city",
            "state",
            "postal_code",
            "country",
            "notes",
            "contacts_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at", "contacts_count"]

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value


class ContactSerializer(ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)

    class Meta:
        model = Contact
        fields = ["id", "customer", "name", "email", "phone", "role", "created_at", "updated_at"]
        read_only_fields = ["id", "customer", "created_at", "updated_at"]
