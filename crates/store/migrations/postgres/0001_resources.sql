-- PostgreSQL twin of migrations/sqlite: the same tables; ids sort bytewise (COLLATE "C") so
-- keyset paging orders them as SQLite does.
-- The REST resources of the IoT Central data plane. JSON documents are kept as TEXT so that the
-- same schema and SQL fit SQLite and PostgreSQL; times are milliseconds since the Unix epoch.

CREATE TABLE settings (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id         TEXT COLLATE "C" PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    roles      TEXT NOT NULL,
    expiry_ms  BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE device_templates (
    id           TEXT COLLATE "C" PRIMARY KEY,
    etag         TEXT NOT NULL,
    display_name TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL
);

-- The index of each template's capabilities; component '' is the root interface.
CREATE TABLE template_capabilities (
    template_id TEXT COLLATE "C" NOT NULL REFERENCES device_templates (id) ON DELETE CASCADE,
    component   TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    schema      TEXT NOT NULL,
    PRIMARY KEY (template_id, component, name)
);

CREATE TABLE devices (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    etag                TEXT NOT NULL,
    display_name        TEXT NOT NULL,
    template            TEXT REFERENCES device_templates (id),
    enabled             BOOLEAN NOT NULL,
    provisioned         BOOLEAN NOT NULL,
    simulated           BOOLEAN NOT NULL,
    organizations       TEXT NOT NULL,
    cloud_properties    TEXT NOT NULL DEFAULT '{}',
    reported_properties TEXT NOT NULL DEFAULT '{}',
    attestation         TEXT,
    created_ms          BIGINT NOT NULL
);
CREATE INDEX devices_by_template ON devices (template);

CREATE TABLE device_groups (
    id            TEXT COLLATE "C" PRIMARY KEY,
    etag          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    filter        TEXT NOT NULL,
    description   TEXT,
    organizations TEXT NOT NULL,
    created_ms    BIGINT NOT NULL
);

CREATE TABLE enrollment_groups (
    id            TEXT COLLATE "C" PRIMARY KEY,
    etag          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    kind          TEXT NOT NULL,
    primary_key   TEXT NOT NULL,
    secondary_key TEXT NOT NULL,
    created_ms    BIGINT NOT NULL
);
