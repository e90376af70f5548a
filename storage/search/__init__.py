"""The search engine behind /contact, /agreement, plain-text lookups and inline mode.

The modules: `vocabulary` (the units, branches and zones a query may name, from the
database), `liaisons` and `clauses` (the two searches), `dialects` (their SQL per
backend, run through the driver), `index` (keeping the index in step), `probe` (can
this database search Chinese), `limits` (page size and the cap of counted hits).

How a contact query is answered
-------------------------------
1. The query is normalised (`core.normalize`) and parsed against an in-memory
   `core.vocabulary.Vocabulary` of units, branches and zones (loaded from the
   database, cached per database; `invalidate()` drops it, `refresh_search_index`
   does so too).
   `四川 刑侦`, `川刑警`, `Sichuan CID` become unit and branch ids; what is left
   (names, phone digits, free text) becomes terms.
2. Units and branches are indexed columns of `search_liaisons`, answered by plain
   SQL on both backends. Terms go to the token index:

   * SQLite: an FTS5 table over `search_liaisons` holding the positional stream of
     overlapping two-character (Chinese) and three-character (ASCII) tokens, with a
     filler token at punctuation and field boundaries; a term is a phrase query
     (`grams : "张伟 伟民"`), a single Chinese character a lookup in the `chars`
     column, unit and branch filters `keys : u12`/`keys : b3` in the same MATCH.
     (FTS5's own trigram tokenizer finds nothing for two characters.)
   * PostgreSQL: the same tokens (plus single characters) as a `text[]` column with
     a GIN index: `grams @> ARRAY[...]`, confirmed by `strpos` on the normalised
     document unless one token is the whole term. No pg_trgm, so the database's
     ctype does not matter.

3. Ranking is cheap by construction: `rowkey` = role rank << 32 | liaison id, so
   index order is rank order. Tiers: `EXACT` (unit and branch as asked), then `UNIT`
   (that unit, other or no branch), `BRANCH` (branch only asked), `NAME` (the name
   is the term), `FUZZY` (name, phone digits or text contain the terms); within a
   tier primary before backup, then id.
4. Limit early: counts stop at `RESULT_CAP` (200: "200+"; counting every match of
   a frequent term was the slow part), and each search is ONE statement — the
   capped count and the first offset + limit rows of every tier together — run
   through the driver (`dialects.fetch`): on a busy machine the hand-offs to aiosqlite's
   thread and SQLAlchemy's result layers cost more than the query itself.

Clauses (`search_clauses`) are indexed twice: heading + mechanism names (kind 0)
and the whole clause (kind 1), `rowkey` = status rank << 34 | kind << 32 | clause
id. One ordered scan yields in-force before superseded, heading/mechanism matches
before text matches; the count is over kind 1 rows only. The same statement
fetches the page's clauses, agreements and mechanism names; snippets are cut from
the original text around the match found in the normalised text.

Keeping the index in step: `refresh_search_index(session, ...)` after any change
of liaisons, clauses, agreements (status) or mechanisms (the importer calls it);
deleting a liaison or clause removes its rows by cascade (SQLite: triggers keep
the FTS5 tables in step). A full rebuild drops the secondary indexes, writes the
rows in rank order through the driver (COPY on PostgreSQL) and rebuilds them.
`check_search_backend(engine)` is the start-up probe, `ensure_search_index`
fills an empty index.
"""
