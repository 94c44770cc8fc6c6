#!/usr/bin/env bash
# The same receipt workload on PostgreSQL and on case-escrow, in one run on this
# machine, so that the result is a ratio rather than two numbers from two days.
#
# PostgreSQL gets what a court's vendor would build on it: one transaction a receipt
# (insert the entry, whose (special_account_id, bank_ref) and request_id are unique;
# update the case's balance under CHECK (balance >= 0)), with fsync=on and
# synchronous_commit=on, driven by pgbench with 64 clients on 127.0.0.1. case-escrow
# gets 64 gRPC clients on 127.0.0.1 sending RecordReceipt (`case-escrow bench`). Both
# keep their data under $TMPDIR (default /tmp), on the same disk.
#
# Also measured: the disk's own append + fdatasync rate, and RecordReceipts.
#
# Usage: bench/postgres.sh            (as root: it installs postgresql if missing)
# Environment: CLIENTS (64), DURATION seconds per run (20), CASES (1000),
#              BIN (target/release/case-escrow, built if missing),
#              ENGINE, case-escrow's state engine (sled, the default, or fjall).
set -euo pipefail

CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-20}
CASES=${CASES:-1000}
ENGINE=${ENGINE:-sled}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/case-escrow}

if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --locked)
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "postgresql is not installed and this is not root: apt-get install postgresql" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGBENCH=$PGBIN/pgbench
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/case-escrow-pg.XXXXXX")
chmod 755 "$WORK"
chown postgres "$WORK"
as_postgres() { runuser -u postgres -- "$@"; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
  as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap stop EXIT

echo "== machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== disk under $WORK: $(df -h "$WORK" | awk 'NR==2 {print $1, $2}')"

echo "== the disk: append 330 bytes + fdatasync, one at a time"
CASE_ESCROW_LOG=warn "$BIN" bench --workload fsync --seconds 5 --requests 100000000 --data-dir "$WORK/fsync" | tee "$WORK/fsync.out"
FSYNC=$(sed -n 's/^RESULT .*ops_per_s=\([0-9]*\).*/\1/p' "$WORK/fsync.out")
rm -rf "$WORK/fsync"

echo "== PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (fsync=on, synchronous_commit=on)"
as_postgres "$PGBIN/initdb" -D "$WORK/data" -A trust -U postgres -E UTF8 >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start -o \
  "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$WORK -c fsync=on \
   -c synchronous_commit=on -c full_page_writes=on -c wal_sync_method=fdatasync \
   -c max_connections=$((CLIENTS + 20)) -c shared_buffers=256MB" >/dev/null
PSQL=(as_postgres "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -q)
"${PSQL[@]}" -c "CREATE DATABASE escrow"
"${PSQL[@]}" -d escrow <<SQL
CREATE TABLE cases (
  case_id     integer PRIMARY KEY,
  case_number text    NOT NULL UNIQUE,
  received    bigint  NOT NULL DEFAULT 0,
  balance     bigint  NOT NULL DEFAULT 0 CHECK (balance >= 0)
);
CREATE TABLE entries (
  sequence           bigserial   PRIMARY KEY,
  special_account_id integer     NOT NULL,
  case_id            integer     NOT NULL REFERENCES cases,
  amount_fen         bigint      NOT NULL CHECK (amount_fen > 0),
  bank_ref           text        NOT NULL,
  request_id         text        NOT NULL UNIQUE,
  payer_name         text        NOT NULL,
  payer_account      text        NOT NULL,
  value_date         date        NOT NULL,
  recorded_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (special_account_id, bank_ref)
);
INSERT INTO cases (case_id, case_number)
  SELECT g, format('（2024）云0102执%s号', g) FROM generate_series(1, $CASES) g;
VACUUM ANALYZE;
SQL
cat > "$WORK/receipt.sql" <<'SQL'
\set case random(1, :cases)
\set fen random(100, 1000099)
BEGIN;
INSERT INTO entries (special_account_id, case_id, amount_fen, bank_ref, request_id,
                     payer_name, payer_account, value_date)
  VALUES (1, :case, :fen, 'B' || gen_random_uuid(), 'R' || gen_random_uuid(),
          '某某贸易有限公司', '6217000000000000001', '2024-03-01');
UPDATE cases SET received = received + :fen, balance = balance + :fen
  WHERE case_id = :case;
END;
SQL
chown postgres "$WORK/receipt.sql"
(cd "$WORK" && as_postgres "$PGBENCH" -n -h 127.0.0.1 -p "$PORT" -U postgres \
  -c "$CLIENTS" -j 2 -T "$DURATION" -D cases="$CASES" -f receipt.sql -l --log-prefix=pglat \
  escrow) | tee "$WORK/pg.out"
PG_TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/pg.out" | head -1)
# pgbench -l: one line a transaction; the third field is its latency in microseconds.
cat "$WORK"/pglat.* | awk '{print $3}' | sort -n > "$WORK/pglat.sorted"
pct() { awk -v q="$1" '{v[NR]=$1} END {i=int(NR*q); if (i<1) i=1; printf "%.2f", v[i]/1000}' "$WORK/pglat.sorted"; }
PG_P50=$(pct 0.5); PG_P99=$(pct 0.99); PG_P999=$(pct 0.999)
# The ledger still adds up: every entry is in its case's balance.
"${PSQL[@]}" -d escrow -At -c "SELECT CASE WHEN (SELECT sum(amount_fen) FROM entries)
  = (SELECT sum(received) FROM cases) THEN 'verify: PostgreSQL entries and balances agree'
  ELSE 'verify: PostgreSQL entries and balances DISAGREE' END"
as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null

echo "== case-escrow ($ENGINE): RecordReceipt, $CLIENTS clients"
# pgbench's percentiles include its first second, so these do too (--warmup-s 0).
CASE_ESCROW_LOG=warn "$BIN" bench --workload receipts --clients "$CLIENTS" --seconds "$DURATION" \
  --state-engine "$ENGINE" --requests 1000000000 --cases "$CASES" --report-every-s 0 --verify grpc --warmup-s 0 | tee "$WORK/ce.out"
CE=$(grep '^RESULT' "$WORK/ce.out")
CE_TPS=$(sed -n 's/.* receipts_per_s=\([0-9]*\).*/\1/p' <<<"$CE")
CE_P50=$(sed -n 's/.* p50_ms=\([0-9.]*\).*/\1/p' <<<"$CE")
CE_P99=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' <<<"$CE")
CE_P999=$(sed -n 's/.* p999_ms=\([0-9.]*\).*/\1/p' <<<"$CE")
CE_SYNCS=$(sed -n 's/^writer: [0-9]* batches (= fdatasyncs) in [0-9.]* s = \([0-9]*\)\/s.*/\1/p' "$WORK/ce.out")

echo "== case-escrow ($ENGINE): RecordReceipts, 4 clients x 8189 receipts a call"
CASE_ESCROW_LOG=warn "$BIN" bench --workload batch --clients 4 --batch-size 8189 --seconds "$DURATION" \
  --state-engine "$ENGINE" --requests 1000000000 --cases "$CASES" --report-every-s 0 --verify grpc | tee "$WORK/batch.out"
BATCH_TPS=$(sed -n 's/^RESULT .* receipts_per_s=\([0-9]*\).*/\1/p' "$WORK/batch.out")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; }
echo
echo "== side by side, $CLIENTS clients, ${DURATION} s each, this machine, this run"
printf '%-48s %12s %9s %9s %9s\n' "" "receipts/s" "p50 ms" "p99 ms" "p999 ms"
printf '%-48s %12.0f %9s %9s %9s\n' "PostgreSQL, one transaction a receipt" "$PG_TPS" "$PG_P50" "$PG_P99" "$PG_P999"
printf '%-48s %12s %9s %9s %9s\n' "case-escrow ($ENGINE) RecordReceipt" "$CE_TPS" "$CE_P50" "$CE_P99" "$CE_P999"
printf '%-48s %12s\n' "case-escrow ($ENGINE) RecordReceipts (8189/call)" "$BATCH_TPS"
printf '%-48s %12s\n' "the disk: append + fdatasync, serial" "$FSYNC"
echo "ratio RecordReceipt / PostgreSQL:  $(ratio "$CE_TPS" "$PG_TPS")x"
echo "ratio RecordReceipts / PostgreSQL: $(ratio "$BATCH_TPS" "$PG_TPS")x"
echo "group commit: $CE_SYNCS fdatasyncs/s served $CE_TPS receipts/s, $(ratio "$CE_TPS" "$FSYNC")x the disk's serial fdatasync rate"
