-- Tables of the demo shard map (demo.yaml), created by `shardgate demo` on every shard.
CREATE TABLE IF NOT EXISTS users (
    user_id bigint PRIMARY KEY,
    name text NOT NULL,
    country text
);
CREATE TABLE IF NOT EXISTS orders (
    order_id bigint NOT NULL,
    user_id bigint NOT NULL,
    amount numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, order_id)
);
CREATE TABLE IF NOT EXISTS events (
    created_at timestamp NOT NULL,
    kind text NOT NULL,
    payload jsonb
);
CREATE TABLE IF NOT EXISTS documents (
    tenant_id integer NOT NULL,
    doc_id bigint NOT NULL,
    title text NOT NULL,
    PRIMARY KEY (tenant_id, doc_id)
);
CREATE TABLE IF NOT EXISTS countries (
    code text PRIMARY KEY,
    name text NOT NULL
);
