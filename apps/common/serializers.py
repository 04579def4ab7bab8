"""Serializer bases that hold JSON input to the types our OpenAPI schema documents.

DRF coerces freely: ``0`` is accepted for a boolean, ``5`` for a string (stored as ``"5"``), ``"5"``
for an integer, a number for a decimal string, ``{}`` for a country code. The schema says otherwise,
so a client that relies on the documentation and one that relies on the leniency would disagree
about what the API is; the fuzzer reported every such case as "schema-violating request accepted".
(Decimals are documented as a string or an integer, and take both.)

Every API serializer derives from :class:`Serializer` or :class:`ModelSerializer` here (ruff's
banned-api rule refuses DRF's own bases in ``apps/``). Before DRF's own validation, each writable
field present in a JSON body is checked against the JSON type its class is documented as; a wrong
type is a 400 on that field. Form and query-string input (a ``QueryDict``: the browsable API's
forms, filter serializers) is all strings by nature and keeps DRF's coercion. Python values that
JSON never produces (``Decimal``, ``UUID``, ``date``, model instances) stay accepted, for services
and commands that validate data they built themselves.

A field can declare its own ``json_types`` (a tuple of Python types) when its schema says more than
its class (a node's vCPUs: a decimal also accepted as any JSON number).
"""

import copy
import datetime
import decimal
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import models
from django.http import QueryDict
from rest_framework import fields, relations
from rest_framework import serializers as drf

STRING = (str,)
# The contract: money and other decimals travel as strings ("19.99"); an integer is exact too
# ("quantity": 2), a float is not (19.999999999999999 arrives as 20.0), so it is refused.
DECIMAL = (str, int, decimal.Decimal)
# Ordered: the first isinstance match wins, so subclasses come before their bases.
_JSON_TYPES: list[tuple[type, tuple[type, ...]]] = [
    (fields.BooleanField, (bool,)),
    (fields.IntegerField, (int,)),
    (fields.FloatField, (int, float)),
    (fields.DecimalField, DECIMAL),
    (fields.UUIDField, (str, uuid.UUID)),
    (fields.DateTimeField, (str, datetime.datetime)),
    (fields.DateField, (str, datetime.date)),
    (fields.TimeField, (str, datetime.time)),
    (fields.DurationField, (str, datetime.timedelta)),
    (fields.CharField, STRING),
    (fields.MultipleChoiceField, (list, set, tuple)),
    (fields.ListField, (list, tuple)),
    (fields.DictField, (dict,)),
    (fields.HStoreField, (dict,)),
    (relations.ManyRelatedField, (list, tuple)),
    (relations.SlugRelatedField, (str, models.Model)),
    (drf.ListSerializer, (list, tuple)),
    (drf.BaseSerializer, (dict,)),
]

_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}


def _choice_types(field: fields.ChoiceField) -> tuple[type, ...]:
    keys = list(field.choices)
    for kinds in ((bool,), (int,), STRING):
        if keys and all(isinstance(key, kinds) for key in keys):
            return kinds
    return ()


def _pk_types(field: relations.PrimaryKeyRelatedField) -> tuple[type, ...]:
    if field.pk_field is not None:
        return json_types(field.pk_field)
    queryset = field.queryset
    pk = queryset.model._meta.pk if queryset is not None else None
    if isinstance(pk, models.UUIDField):
        return (str, uuid.UUID, models.Model)
    if isinstance(pk, models.AutoField | models.BigAutoField | models.IntegerField):
        return (int, models.Model)
    if isinstance(pk, models.CharField):
        return (str, models.Model)
    return ()


def json_types(field: fields.Field) -> tuple[type, ...]:
    """The Python types a JSON value for ``field`` may have; empty when anything goes (JSONField)."""
    declared = getattr(field, "json_types", None)
    if declared is not None:
        return tuple(declared)
    if isinstance(field, fields.ChoiceField) and not isinstance(field, fields.MultipleChoiceField):
        return _choice_types(field)
    if isinstance(field, relations.PrimaryKeyRelatedField):
        return _pk_types(field)
    for cls, kinds in _JSON_TYPES:
        if isinstance(field, cls):
            return kinds
    return ()


def _expected(kinds: tuple[type, ...]) -> str:
    names = [_NAMES[kind] for kind in kinds if kind in _NAMES]
    return " or ".join(dict.fromkeys(names)) or "of another type"


def type_error(field: fields.Field, value: Any) -> str | None:
    """Why ``value`` (from a JSON body) is not of the documented type of ``field``, or None."""
    if value is None:
        return None  # allow_null is DRF's to decide
    kinds = json_types(field)
    if not kinds:
        return None
    if isinstance(value, float) and int in kinds and float not in kinds and value.is_integer():
        return None  # JSON Schema counts 5.0 as an integer
    # bool is an int in Python, never in JSON Schema.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        return f"Must be {_expected(kinds)}."
    child = getattr(field, "child", None)
    if isinstance(field, fields.ListField | fields.DictField) and child is not None:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            problem = type_error(child, item)
            if problem:
                return f"Item {key}: {problem}"
    if isinstance(field, relations.ManyRelatedField):
        for index, item in enumerate(value):
            problem = type_error(field.child_relation, item)
            if problem:
                return f"Item {index}: {problem}"
    return None


# Refuses, with a 400 per field, JSON values of another type than the schema documents. (A comment,
# not a docstring: drf-spectacular would show a base class's docstring as every serializer's description.)
class StrictJSONMixin:
    def to_internal_value(self, data):
        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            errors = {}
            for field in self._writable_fields:
                if field.field_name in data:
                    problem = type_error(field, data[field.field_name])
                    if problem:
                        errors[field.field_name] = [problem]
            if errors:
                raise drf.ValidationError(errors)
        return super().to_internal_value(data)


# One field's read step in ``FastReadMixin``: (field name, attribute or None, its to_representation, the field).
_ReadStep = tuple[str, str | None, Any, fields.Field]
_GENERIC = object()  # "read this field with DRF's own steps"


# Turns a model instance into its answer with DRF's own per-field functions, less DRF's per-row overhead.
# (A comment, not a docstring: drf-spectacular would show a base class's docstring as every description.)
#
# DRF's ``Serializer.to_representation`` walks ``_readable_fields`` (a generator over ``fields``) and calls
# ``field.get_attribute`` (a generic walk of ``source_attrs`` with Mapping and callable checks and exception
# translation) for every field of every row: on a page of 50 rows of 20 fields that is most of the
# serializer's time. The fields and their order are the same for every row of one serializer, so the walk is
# planned once per serializer instance (the child of a list serves the whole page): a field whose source is
# one plain attribute and whose ``get_attribute`` is DRF's own is read with ``getattr``; everything else
# (nested and related fields, ``source="*"``, dotted sources, a missing attribute, a callable, a dict
# instead of a model) takes DRF's own steps, so the answer is the same, key for key
# (tests/kernel/test_list_fast_path.py compares both).
class FastReadMixin:
    def _read_plan(self) -> list[_ReadStep]:
        plan = self.__dict__.get("_mp_read_plan")
        if plan is None:
            plan = []
            for field in self._readable_fields:
                simple = type(field).get_attribute is fields.Field.get_attribute and len(field.source_attrs) == 1
                attr = field.source_attrs[0] if simple else None
                plan.append((field.field_name, attr, field.to_representation, field))
            self.__dict__["_mp_read_plan"] = plan
        return plan

    def to_representation(self, instance):
        if not isinstance(instance, models.Model):
            return super().to_representation(instance)
        ret = {}
        for name, attr, to_representation, field in self._read_plan():
            if attr is not None:
                try:
                    value = getattr(instance, attr)
                except Exception:  # DRF's steps below answer it (a default, a skip, None or its error)
                    value = _GENERIC
                if value is not _GENERIC and not callable(value):
                    ret[name] = None if value is None else to_representation(value)
                    continue
            try:
                attribute = field.get_attribute(instance)
            except fields.SkipField:
                continue
            check_for_none = attribute.pk if isinstance(attribute, relations.PKOnlyObject) else attribute
            ret[name] = None if check_for_none is None else to_representation(attribute)
        return ret


# DRF's ``ModelSerializer.get_fields`` reads the model's meta and builds every field anew, and
# ``Serializer.get_fields`` deep-copies every declared field (a new field made from deep copies of its
# arguments), each time a serializer is made: at least once per request, about 1 ms for a customer's 20
# fields (a tenth of a list request; most of it the 250 choices of the country field, copied and
# indexed again). What they build depends on the class alone (its ``Meta`` and declared fields; no
# serializer of ours overrides those steps), so it is built once per class, and each serializer gets
# its own copy of every field: a plain field as a shallow copy (DRF keeps a serializer's own state in
# a field by assignment: ``bind`` sets its name, parent, label and source; its validators list, a
# mutable default and a queryset are copied, as code may change or read them in place), a field that
# holds other fields (a nested serializer, a list's child, a many-relation) as DRF's own deep copy.
# Whatever a serializer changes in its ``fields`` stays its own (tests/kernel/test_serializer_prototypes.py).
def _holds_fields(field: fields.Field) -> bool:
    return isinstance(field, drf.BaseSerializer) or hasattr(field, "child") or hasattr(field, "child_relation")


def _own_copy(field: fields.Field) -> fields.Field:
    if _holds_fields(field):
        return copy.deepcopy(field)
    new = object.__new__(type(field))
    new.__dict__.update(field.__dict__)
    if "_validators" in field.__dict__:
        new._validators = list(field._validators)
    for name in ("default", "initial"):  # a mutable value handed to validated data is copied too
        if isinstance(field.__dict__.get(name), list | dict | set):
            setattr(new, name, copy.deepcopy(field.__dict__[name]))
    if isinstance(field.__dict__.get("queryset"), models.QuerySet):
        new.queryset = field.queryset.all()  # a clone: rows one serializer read are never another's
    return new


class PrototypeFieldsMixin:
    def get_fields(self):
        cls = type(self)
        prototypes = cls.__dict__.get("_mp_field_prototypes")
        if prototypes is None:
            prototypes = cls._mp_field_prototypes = super().get_fields()  # this class's own, not a subclass's
        return {name: _own_copy(field) for name, field in prototypes.items()}


class Serializer(StrictJSONMixin, FastReadMixin, PrototypeFieldsMixin, drf.Serializer):
    pass


class ModelSerializer(StrictJSONMixin, FastReadMixin, PrototypeFieldsMixin, drf.ModelSerializer):
    pass
