"""PostgreSQL enforces the ledger's invariants, whoever writes (ORM, raw SQL).

- every entry balances per currency, checked at commit (deferred constraint
  trigger, as django-hordak does) and has at least one posting;
- entries and postings are immutable: UPDATE and DELETE raise;
- a posting's currency is its account's;
- balances move only by postings: one statement-level trigger adds each INSERT
  statement's postings to their accounts (one UPDATE per account per statement,
  accounts locked in id order), and a direct change of ``balance`` raises;
  accounts start at 0 and their identity (code, currency, type, no_overdraft)
  is immutable; accounts are never deleted;
- ``no_overdraft`` accounts never go below zero (CHECK ledger_account_no_overdraft,
  which the balance trigger's UPDATE hits).

TRUNCATE is left to the table owner (the test suite flushes with it); the
application role should not hold TRUNCATE or superuser (which could disable
triggers).
"""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION ledger_entry_balanced() RETURNS trigger AS $$
DECLARE
    bad record;
BEGIN
    -- At commit the queued checks run back to back in insertion order, so the
    -- legs of one entry arrive together: check each entry once. Any posting
    -- INSERT resets the marker (ledger_apply_postings), so it never outlives
    -- the state it vouches for (e.g. after SET CONSTRAINTS ... IMMEDIATE).
    IF current_setting('ledger.checked_entry', true) = NEW.entry_id::text THEN
        RETURN NULL;
    END IF;
    SELECT currency,
           sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) AS net
      INTO bad
      FROM ledger_posting
     WHERE entry_id = NEW.entry_id
     GROUP BY currency
    HAVING sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: entry % does not balance in % (debits - credits = %)',
            NEW.entry_id, bad.currency, bad.net
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
    END IF;
    PERFORM set_config('ledger.checked_entry', NEW.entry_id::text, true);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_posting_balanced
    AFTER INSERT ON ledger_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced();

CREATE OR REPLACE FUNCTION ledger_entry_has_postings() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_posting WHERE entry_id = NEW.id) THEN
        RAISE EXCEPTION 'ledger: entry % has no postings', NEW.id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_entry_has_postings';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_entry_has_postings
    AFTER INSERT ON ledger_journalentry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_has_postings();

CREATE OR REPLACE FUNCTION ledger_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is refused; post a correcting entry instead',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_immutable';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_journalentry_immutable
    BEFORE UPDATE OR DELETE ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_posting_immutable
    BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();

CREATE OR REPLACE FUNCTION ledger_account_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger: accounts are never deleted'
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_immutable';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.balance <> 0 THEN
            RAISE EXCEPTION 'ledger: an account opens at 0; post an entry instead'
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'ledger_account_balance_by_postings';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.code <> OLD.code OR NEW.currency <> OLD.currency
       OR NEW.type <> OLD.type OR NEW.no_overdraft <> OLD.no_overdraft
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'ledger: account % identity is immutable', OLD.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_immutable';
    END IF;
    -- Depth 2 means "called from ledger_apply_postings"; depth 1 is a direct write.
    IF NEW.balance <> OLD.balance AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'ledger: account % balance moves only by postings', OLD.id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_account_balance_by_postings';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_account_guard
    BEFORE INSERT OR UPDATE OR DELETE ON ledger_account
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();

CREATE OR REPLACE FUNCTION ledger_apply_postings() RETURNS trigger AS $$
BEGIN
    PERFORM set_config('ledger.checked_entry', '', true);
    IF EXISTS (
        SELECT 1 FROM new_postings p JOIN ledger_account a ON a.id = p.account_id
         WHERE a.currency <> p.currency
    ) THEN
        RAISE EXCEPTION 'ledger: a posting''s currency differs from its account''s'
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_posting_currency';
    END IF;
    -- Lock in id order: concurrent batches touching the same accounts queue up
    -- instead of deadlocking.
    PERFORM 1 FROM ledger_account
      WHERE id IN (SELECT account_id FROM new_postings) ORDER BY id FOR UPDATE;
    UPDATE ledger_account a
       SET balance = a.balance + d.delta
      FROM (
        SELECT p.account_id,
               sum(CASE WHEN (p.direction = 'debit') = (acc.type IN ('asset', 'expense'))
                        THEN p.amount ELSE -p.amount END) AS delta
          FROM new_postings p JOIN ledger_account acc ON acc.id = p.account_id
         GROUP BY p.account_id
      ) d
     WHERE a.id = d.account_id AND d.delta <> 0;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_posting_apply
    AFTER INSERT ON ledger_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_postings();
"""

DROP = """
DROP TRIGGER IF EXISTS ledger_posting_apply ON ledger_posting;
DROP TRIGGER IF EXISTS ledger_account_guard ON ledger_account;
DROP TRIGGER IF EXISTS ledger_posting_immutable ON ledger_posting;
DROP TRIGGER IF EXISTS ledger_journalentry_immutable ON ledger_journalentry;
DROP TRIGGER IF EXISTS ledger_entry_has_postings ON ledger_journalentry;
DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting;
DROP FUNCTION IF EXISTS ledger_apply_postings();
DROP FUNCTION IF EXISTS ledger_account_guard();
DROP FUNCTION IF EXISTS ledger_immutable();
DROP FUNCTION IF EXISTS ledger_entry_has_postings();
DROP FUNCTION IF EXISTS ledger_entry_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunSQL([CREATE], [DROP])]
