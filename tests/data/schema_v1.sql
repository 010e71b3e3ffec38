-- A database made by newsmon's released schema v1 (store._migration_1), with a
-- little of every table. tests/test_migrations.py upgrades it with the current code.
-- Regenerate only if v1 itself was wrong: it stands for databases users already have.
PRAGMA user_version = 1;
BEGIN TRANSACTION;
CREATE TABLE "alerts" (
   "id" INTEGER PRIMARY KEY,
   "alert_key" TEXT NOT NULL,
   "match_id" INTEGER REFERENCES "matches"("id"),
   "article_id" INTEGER REFERENCES "articles"("id"),
   "channel" TEXT NOT NULL,
   "topic" TEXT,
   "severity" TEXT,
   "title" TEXT,
   "url" TEXT,
   "source" TEXT,
   "published" TEXT,
   "score" REAL,
   "threshold" REAL,
   "terms" TEXT,
   "evidence" TEXT,
   "kind" TEXT DEFAULT 'match',
   "body" TEXT,
   "status" TEXT NOT NULL DEFAULT 'pending',
   "attempts" INTEGER DEFAULT 0,
   "next_attempt_at" TEXT,
   "last_error" TEXT,
   "created_at" TEXT,
   "sent_at" TEXT
);
INSERT INTO "alerts" VALUES(1,'a1-negotiation-hook',1,1,'hook','negotiation','high','Kremlin says no grounds for negotiations','https://news.example.org/a/1','Example News',NULL,3.5,2.0,'["negotiations"]','[{"field": "body", "text": "there were no grounds for negotiations", "marked": "there were no grounds for **negotiations**", "terms": ["negotiations"]}]','match',NULL,'sent',1,'2025-01-10T10:00:00+00:00',NULL,'2025-01-10T10:00:00+00:00','2025-01-10T10:00:05+00:00');
INSERT INTO "alerts" VALUES(2,'a1-negotiation-mail',1,1,'mail','negotiation','high','Kremlin says no grounds for negotiations','https://news.example.org/a/1','Example News',NULL,3.5,2.0,'["negotiations"]','[{"field": "body", "text": "there were no grounds for negotiations", "marked": "there were no grounds for **negotiations**", "terms": ["negotiations"]}]','match',NULL,'pending',2,'2025-01-10T10:05:00+00:00',NULL,'2025-01-10T10:00:00+00:00',NULL);
CREATE TABLE "articles" (
   "id" INTEGER PRIMARY KEY,
   "dedup_key" TEXT NOT NULL,
   "canonical_url" TEXT,
   "content_hash" TEXT,
   "url" TEXT,
   "title" TEXT,
   "summary" TEXT,
   "body" TEXT,
   "text_source" TEXT,
   "language" TEXT,
   "author" TEXT,
   "published" TEXT,
   "page_error" TEXT,
   "first_feed_id" INTEGER REFERENCES "feeds"("id"),
   "first_seen" TEXT,
   "body_pruned" INTEGER DEFAULT 0
);
INSERT INTO "articles" VALUES(1,'url:https://news.example.org/a/1','https://news.example.org/a/1','h1','https://news.example.org/a/1','Kremlin says no grounds for negotiations','Peace talks remain off the table.','The Kremlin said on Tuesday there were no grounds for negotiations with Kyiv.','page','en',NULL,'2025-01-10T09:00:00+00:00',NULL,1,'2025-01-10T10:00:00+00:00',0);
INSERT INTO "articles" VALUES(2,'hash:h2',NULL,'h2','https://news.example.org/a/2','Weather','Sunny.','','summary',NULL,NULL,NULL,NULL,1,'2025-01-10T10:00:00+00:00',0);
CREATE TABLE "cycles" (
   "id" INTEGER PRIMARY KEY,
   "started_at" TEXT,
   "finished_at" TEXT,
   "feeds_ok" INTEGER,
   "feeds_failed" INTEGER,
   "items_new" INTEGER,
   "matches" INTEGER,
   "alerts" INTEGER,
   "error" TEXT
);
INSERT INTO "cycles" VALUES(1,'2025-01-10T10:00:00+00:00','2025-01-10T10:00:07+00:00',1,1,2,1,2,NULL);
CREATE TABLE "feeds" (
   "id" INTEGER PRIMARY KEY,
   "url" TEXT NOT NULL,
   "name" TEXT,
   "tags" TEXT,
   "enabled" INTEGER DEFAULT 1,
   "etag" TEXT,
   "last_modified" TEXT,
   "body_hash" TEXT,
   "last_poll_at" TEXT,
   "last_success_at" TEXT,
   "last_error" TEXT,
   "last_error_kind" TEXT,
   "last_error_at" TEXT,
   "consecutive_failures" INTEGER DEFAULT 0,
   "failing_since" TEXT,
   "next_poll_at" TEXT,
   "items_total" INTEGER DEFAULT 0,
   "items_per_day" REAL,
   "health_state" TEXT DEFAULT 'ok',
   "created_at" TEXT
);
INSERT INTO "feeds" VALUES(1,'https://news.example.org/feed.xml','Example News','["wire"]',1,'"abc"',NULL,NULL,'2025-01-10T10:00:00+00:00','2025-01-10T10:00:00+00:00',NULL,NULL,NULL,0,NULL,NULL,2,NULL,'ok','2025-01-01T00:00:00+00:00');
INSERT INTO "feeds" VALUES(2,'https://broken.example.org/rss','Broken','[]',1,NULL,NULL,NULL,'2025-01-10T10:00:00+00:00',NULL,'HTTP 500','http_status','2025-01-10T10:00:00+00:00',3,'2025-01-09T10:00:00+00:00',NULL,0,NULL,'ok','2025-01-01T00:00:00+00:00');
CREATE TABLE "items" (
   "id" INTEGER PRIMARY KEY,
   "feed_id" INTEGER NOT NULL REFERENCES "feeds"("id"),
   "guid" TEXT NOT NULL,
   "link" TEXT,
   "canonical_url" TEXT,
   "title" TEXT,
   "published" TEXT,
   "first_seen" TEXT,
   "content_hash" TEXT,
   "article_id" INTEGER REFERENCES "articles"("id")
);
INSERT INTO "items" VALUES(1,1,'g1','https://news.example.org/a/1?utm_source=rss','https://news.example.org/a/1','Kremlin says no grounds for negotiations','2025-01-10T09:00:00+00:00','2025-01-10T10:00:00+00:00','h1',1);
INSERT INTO "items" VALUES(2,1,'g2','https://news.example.org/a/2',NULL,'Weather',NULL,'2025-01-10T10:00:00+00:00','h2',2);
CREATE TABLE "matches" (
   "id" INTEGER PRIMARY KEY,
   "article_id" INTEGER REFERENCES "articles"("id"),
   "topic" TEXT,
   "score" REAL,
   "threshold" REAL,
   "severity" TEXT,
   "terms" TEXT,
   "hits" TEXT,
   "evidence" TEXT,
   "created_at" TEXT
);
INSERT INTO "matches" VALUES(1,1,'negotiation',3.5,2.0,'high','["negotiations"]','[]','[{"field": "body", "text": "there were no grounds for negotiations", "marked": "there were no grounds for **negotiations**", "terms": ["negotiations"]}]','2025-01-10T10:00:00+00:00');
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
INSERT INTO "meta" VALUES('daemon_started_at','2025-01-10T09:59:00+00:00');
CREATE UNIQUE INDEX "idx_feeds_url"
    ON "feeds" ("url");
CREATE UNIQUE INDEX "idx_articles_dedup_key"
    ON "articles" ("dedup_key");
CREATE UNIQUE INDEX "idx_items_feed_id_guid"
    ON "items" ("feed_id", "guid");
CREATE INDEX "idx_items_feed_id_content_hash"
    ON "items" ("feed_id", "content_hash");
CREATE UNIQUE INDEX "idx_matches_article_id_topic"
    ON "matches" ("article_id", "topic");
CREATE INDEX "idx_matches_topic_created_at"
    ON "matches" ("topic", "created_at");
CREATE UNIQUE INDEX "idx_alerts_alert_key"
    ON "alerts" ("alert_key");
CREATE INDEX "idx_alerts_status_next_attempt_at"
    ON "alerts" ("status", "next_attempt_at");
COMMIT;
