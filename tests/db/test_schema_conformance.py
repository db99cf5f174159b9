"""The migrated schema is the seed schema: same columns, keys, defaults and indexes."""

from __future__ import annotations

import psycopg
import pytest

from tests.db.catalog import Catalog, differences, read_catalog, seed_statements
from vmcloud.db.embedded import EmbeddedPostgres

SEED_TABLES = {
    "users",
    "products",
    "instances",
    "subscriptions",
    "transactions",
    "support_tickets",
    "ticket_messages",
    "audit_logs",
    "settings",
    "refresh_tokens",
    "email_verifications",
    "password_resets",
}


@pytest.fixture(scope="module")
def seed_catalog(pg: EmbeddedPostgres) -> Catalog:
    pg.drop_database("seed_reference")
    pg.create_database("seed_reference")
    with psycopg.connect(pg.conninfo("seed_reference"), autocommit=True) as conn:
        for statement in seed_statements():
            conn.execute(statement)  # type: ignore[arg-type]
    return read_catalog(pg.conninfo("seed_reference"))


@pytest.fixture(scope="module")
def migrated_catalog(pg: EmbeddedPostgres, template_url: str) -> Catalog:
    return read_catalog(pg.conninfo("vmcloud_template"))


def test_seed_extraction_finds_every_table_and_index(seed_catalog: Catalog) -> None:
    statements = seed_statements()
    assert sum(s.upper().startswith("CREATE TABLE") for s in statements) == 12
    assert sum(s.upper().startswith("CREATE INDEX") for s in statements) == 26
    assert seed_catalog.tables == SEED_TABLES
    named = {name for (_, name) in seed_catalog.indexes if name.startswith("idx_")}
    assert len(named) == 26


def test_migrated_schema_matches_the_seed(seed_catalog: Catalog, migrated_catalog: Catalog) -> None:
    assert differences(seed_catalog, migrated_catalog) == []


def test_seed_tables_gain_no_unexpected_objects(
    seed_catalog: Catalog, migrated_catalog: Catalog
) -> None:
    # What later migrations added to seed tables, deliberately; anything else is a mistake.
    allowed_extra = {
        # 0003 accounts security
        ("users", "totp_last_step"),
        ("users", "users_role_check"),
        ("users", "users_status_check"),
        ("users", "uq_users_email_lower"),
        ("users", "uq_users_username_lower"),
        ("refresh_tokens", "family_id"),
        ("refresh_tokens", "replaced_by_id"),
        ("refresh_tokens", "ip_address"),
        ("refresh_tokens", "user_agent"),
        ("refresh_tokens", "refresh_tokens_replaced_by_id_fkey"),
        ("refresh_tokens", "ix_refresh_tokens_user_id"),
        ("refresh_tokens", "ix_refresh_tokens_family_id"),
        ("email_verifications", "ix_email_verifications_user_id"),
        ("password_resets", "ix_password_resets_user_id"),
        # 0005 catalogue and audit
        ("products", "products_status_check"),
        ("settings", "settings_type_check"),
        # 0008 compute
        ("instances", "node_id"),
        ("instances", "instances_node_id_fkey"),
        ("instances", "ix_instances_node_id"),
        ("instances", "uq_instances_live_ip_address"),
        # 0010 ledger
        ("users", "users_balance_not_negative_check"),
        ("transactions", "transactions_amount_positive_check"),
        ("transactions", "transactions_type_check"),
        ("transactions", "transactions_status_check"),
        ("transactions", "uq_transactions_provider_id"),
        # 0011 billing
        *(
            ("subscriptions", name)
            for name in (
                "rate",
                "accrued",
                "month_charged",
                "monthly_cap",
                "amount_due",
                "past_due_since",
                "subscriptions_type_check",
                "subscriptions_status_check",
                "subscriptions_price_not_negative_check",
                "subscriptions_accrual_not_negative_check",
                "subscriptions_hourly_has_rate_check",
                "ix_subscriptions_due",
                "uq_subscriptions_live_instance",
            )
        ),
        ("transactions", "period_key"),
        ("transactions", "refund_of"),
        ("transactions", "transactions_refund_of_fkey"),
        ("transactions", "uq_transactions_subscription_period"),
        ("transactions", "ix_transactions_refund_of"),
        # 0012 support
        ("support_tickets", "priority_rank"),
        ("support_tickets", "support_tickets_status_check"),
        ("support_tickets", "support_tickets_priority_check"),
        ("support_tickets", "support_tickets_rating_check"),
        ("support_tickets", "ix_support_tickets_queue"),
        ("ticket_messages", "ix_ticket_messages_ticket_created"),
        # 0013 an instance's load-bearing state in columns
        *(
            ("instances", name)
            for name in (
                "region_id",
                "image_id",
                "billing_cycle",
                "reserved_vcpus",
                "reserved_memory_mb",
                "reserved_disk_gb",
                "transition_at",
                "error_reason",
                "instances_region_id_fkey",
                "instances_image_id_fkey",
                "instances_billing_cycle_check",
            )
        ),
        # 0015 audit and ledger lists: one index per filter, in the keyset order
        *(
            ("audit_logs", f"ix_audit_logs_{name}")
            for name in (
                "timestamp_id",
                "user_id_timestamp_id",
                "action_timestamp_id",
                "entity_type_timestamp_id",
                "entity_id_timestamp_id",
            )
        ),
        *(
            ("transactions", f"ix_transactions_{name}")
            for name in (
                "created_at_id",
                "user_id_created_at_id",
                "type_created_at_id",
                "status_created_at_id",
                "subscription_id_created_at_id",
            )
        ),
        # 0016 the incremental ledger check
        ("transactions", "ix_transactions_completed_processed_at"),
        # 0014 an index per instance-list filter, ending in the sort key
        *(
            ("instances", name)
            for name in (
                "ix_instances_live_created",
                "ix_instances_live_user_created",
                "ix_instances_live_user_status_created",
                "ix_instances_live_status_created",
                "ix_instances_live_node_created",
            )
        ),
    }
    for kind in ("columns", "constraints", "indexes"):
        extra = {
            key
            for key in getattr(migrated_catalog, kind)
            if key[0] in SEED_TABLES and key not in getattr(seed_catalog, kind)
        }
        assert extra <= allowed_extra, f"{kind} not in the seed: {sorted(extra - allowed_extra)}"


def test_comparison_catches_a_changed_default_and_a_missing_index(
    pg: EmbeddedPostgres, seed_catalog: Catalog
) -> None:
    """The comparison itself can fail: a copy of the seed with two deliberate changes."""
    pg.drop_database("seed_altered")
    pg.create_database("seed_altered")
    with psycopg.connect(pg.conninfo("seed_altered"), autocommit=True) as conn:
        for statement in seed_statements():
            conn.execute(statement)  # type: ignore[arg-type]
        conn.execute("ALTER TABLE users ALTER COLUMN balance SET DEFAULT 1.00")
        conn.execute("ALTER TABLE products ALTER COLUMN name TYPE varchar(200)")
        conn.execute("DROP INDEX idx_audit_logs_entity")
    found = differences(seed_catalog, read_catalog(pg.conninfo("seed_altered")))
    assert any("('users', 'balance')" in d for d in found)
    assert any("('products', 'name')" in d for d in found)
    assert any("idx_audit_logs_entity" in d for d in found)
    assert len(found) == 3
