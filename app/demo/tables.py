"""The demo schema's tables and indexes, and the column order of their COPY rows."""

from __future__ import annotations

SCHEMA = "demo"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE {SCHEMA}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE {SCHEMA}.carriers (
    code text PRIMARY KEY, name text NOT NULL, nation text, service text NOT NULL);
CREATE TABLE {SCHEMA}.deliveries (
    id bigint PRIMARY KEY,
    tracking_no text NOT NULL UNIQUE,
    carrier_code text NOT NULL REFERENCES {SCHEMA}.carriers (code),
    sender_name text, sender_phone text, sender_address text,
    recipient_name text, recipient_phone text, recipient_address text,
    fee_krw integer NOT NULL,
    created_at timestamptz NOT NULL,
    handed_over_at timestamptz,
    delivered_at timestamptz,
    marketplace_code text, order_no text,
    restricted boolean NOT NULL DEFAULT false);
CREATE TABLE {SCHEMA}.intl_reservations (
    id bigint PRIMARY KEY,
    reservation_no text NOT NULL UNIQUE,
    name text, contact text, address text, customs_code text,
    carrier_code text REFERENCES {SCHEMA}.carriers (code),
    customs_broker_code text REFERENCES {SCHEMA}.carriers (code),
    created_at timestamptz NOT NULL,
    handed_over_at timestamptz,
    restricted boolean NOT NULL DEFAULT false);
CREATE TABLE {SCHEMA}.email_counseling (
    id bigint PRIMARY KEY,
    ticket_no text NOT NULL UNIQUE,
    name text, contact_phone text, email text, inquiry text,
    created_at timestamptz NOT NULL,
    answered_at timestamptz);
CREATE TABLE {SCHEMA}.app_installs (
    id bigint PRIMARY KEY,
    phone text, device_serial text, os text,
    installed_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    provision_opt_in boolean NOT NULL DEFAULT false,
    provision_opted_in_at timestamptz,
    provided_to text REFERENCES {SCHEMA}.carriers (code));
CREATE TABLE {SCHEMA}.marketing_contacts (
    id bigint PRIMARY KEY,
    company_name text, name text, company_address text, email text, mobile text,
    marketing_opt_in boolean NOT NULL,
    opted_in_at timestamptz,
    sms_agency_code text REFERENCES {SCHEMA}.carriers (code),
    created_at timestamptz NOT NULL);
CREATE TABLE {SCHEMA}.access_logs (
    id bigint PRIMARY KEY,
    account_email text,
    ip_address inet,
    accessed_at timestamptz NOT NULL,
    path text);
"""

INDEXES = f"""
CREATE INDEX ON {SCHEMA}.deliveries (sender_phone);
CREATE INDEX ON {SCHEMA}.deliveries (recipient_phone);
CREATE INDEX ON {SCHEMA}.intl_reservations (contact);
CREATE INDEX ON {SCHEMA}.email_counseling (lower(email));
CREATE INDEX ON {SCHEMA}.email_counseling (contact_phone);
CREATE INDEX ON {SCHEMA}.app_installs (phone);
CREATE INDEX ON {SCHEMA}.marketing_contacts (email);
CREATE INDEX ON {SCHEMA}.marketing_contacts (mobile);
CREATE INDEX ON {SCHEMA}.access_logs (account_email);
"""

COLUMNS: dict[str, tuple[str, ...]] = {
    "deliveries": (
        "id", "tracking_no", "carrier_code", "sender_name", "sender_phone", "sender_address",
        "recipient_name", "recipient_phone", "recipient_address", "fee_krw", "created_at",
        "handed_over_at", "delivered_at", "marketplace_code", "order_no",
    ),
    "intl_reservations": (
        "id", "reservation_no", "name", "contact", "address", "customs_code", "carrier_code",
        "customs_broker_code", "created_at", "handed_over_at",
    ),
    "email_counseling": (
        "id", "ticket_no", "name", "contact_phone", "email", "inquiry", "created_at",
        "answered_at",
    ),
    "app_installs": (
        "id", "phone", "device_serial", "os", "installed_at", "last_seen_at",
        "provision_opt_in", "provision_opted_in_at", "provided_to",
    ),
    "marketing_contacts": (
        "id", "company_name", "name", "company_address", "email", "mobile", "marketing_opt_in",
        "opted_in_at", "sms_agency_code", "created_at",
    ),
    "access_logs": ("id", "account_email", "ip_address", "accessed_at", "path"),
}  # fmt: skip
