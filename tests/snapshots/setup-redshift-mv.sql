-- The one-time SQL of `dynashift setup`; printing it ran nothing.

-- On the view's server: Redshift reads the Kinesis stream redshift_cdc into cdc.ddb_changes.
-- (When cdc.ddb_changes exists, setup skips this part and adopts it once it has the columns shard_id, sequence_number, kinesis_data.)
CREATE EXTERNAL SCHEMA IF NOT EXISTS "kds" FROM KINESIS IAM_ROLE 'arn:aws:iam::123456789012:role/my_streaming_role';
CREATE SCHEMA IF NOT EXISTS "cdc";
CREATE MATERIALIZED VIEW "cdc"."ddb_changes" AUTO REFRESH YES AS SELECT "approximate_arrival_timestamp", "partition_key", "shard_id", "sequence_number", "refresh_time", "kinesis_data" FROM "kds"."redshift_cdc";

-- In the target (redshift): dynashift's control tables (tables are made as changes arrive).
CREATE SCHEMA IF NOT EXISTS "_dynashift";
CREATE TABLE IF NOT EXISTS "_dynashift"."tables" (source_table VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, target_schema VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, target_name VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, columns_mode VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, naming VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, key_attributes VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, created_at TIMESTAMP NOT NULL, changes_applied BIGINT NOT NULL, deletes_applied BIGINT NOT NULL, expired_applied BIGINT NOT NULL, expired_kept BIGINT NOT NULL, last_version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS "_dynashift"."columns" (source_table VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, ordinal BIGINT NOT NULL, attribute VARCHAR(65535) COLLATE CASE_SENSITIVE, column_name VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, column_type VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, is_variant BOOLEAN NOT NULL, added_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS "_dynashift"."tombstones" (source_table VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, item_key VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, version BIGINT NOT NULL, sequence VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, event VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, deleted_at TIMESTAMP NOT NULL, event_ids VARCHAR(65535) COLLATE CASE_SENSITIVE);
CREATE TABLE IF NOT EXISTS "_dynashift"."meta" (name VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, value VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL);
CREATE TABLE IF NOT EXISTS "_dynashift"."checkpoints" (source VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, shard VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, sequence VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS "_dynashift"."rejects" (source VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, shard VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, sequence VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, table_name VARCHAR(65535) COLLATE CASE_SENSITIVE, reason VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, raw_text VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, raw_bytes VARBYTE(1024000), rejected_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS "_dynashift"."runs" (committed_at TIMESTAMP NOT NULL, records BIGINT NOT NULL, changes BIGINT NOT NULL, applied BIGINT NOT NULL, rejects BIGINT NOT NULL);
