//! The OpenAPI 3 document of the API, written by hand (served at `/api/v1/openapi.json`).

pub const DOCUMENT: &str = r##"{
  "openapi": "3.0.3",
  "info": {
    "title": "Tally election-night API",
    "version": "1",
    "description": "Tally sheets in, results out. Writes need a bearer token (roles admin, official, observer); reads are public. Every error is {code, message}: E1xx validation codes (docs/validation-codes.md) or H4xx/H5xx codes named after the HTTP status: H503 when the database cannot commit or be read right now (nothing stored; retry with the same Idempotency-Key), H500 when a stored row is corrupt (the message names its table and key; nothing acknowledged)."
  },
  "servers": [{"url": "/api/v1"}],
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "Error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "example": "E102"},
        "message": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
          "index": {"type": "integer"}, "station_id": {}, "code": {"type": "string"}, "message": {"type": "string"}}}}}},
      "Count": {"type": "integer", "minimum": 0, "maximum": 1099511627776, "nullable": true},
      "Sheet": {"type": "object", "required": ["station_id"], "additionalProperties": false, "properties": {
        "station_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\u0000-\\u001f\\u007f]+$",
          "description": "A station of the registry (otherwise 422 E106)."},
        "round": {"type": "integer", "minimum": 1, "maximum": 255, "default": 1},
        "registered": {"$ref": "#/components/schemas/Count"},
        "cast": {"$ref": "#/components/schemas/Count"},
        "invalid": {"$ref": "#/components/schemas/Count"},
        "valid": {"$ref": "#/components/schemas/Count"},
        "votes": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Count"}},
        "extra": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Count"}}}},
      "Receipt": {"type": "object", "required": ["sheet_id", "version", "journal_seq", "hash"], "properties": {
        "sheet_id": {"type": "integer"}, "station_id": {"type": "string"}, "round": {"type": "integer"},
        "source": {"type": "string", "example": "official"}, "version": {"type": "integer"},
        "journal_seq": {"type": "integer"}, "hash": {"type": "string"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "unchanged": {"type": "boolean"}}},
      "JournalEntry": {"type": "object", "properties": {
        "seq": {"type": "integer"}, "at": {"type": "integer"}, "kind": {"type": "string"}, "user_id": {"type": "integer"},
        "sheet_id": {"type": "integer", "nullable": true}, "round": {"type": "integer", "nullable": true},
        "station_id": {"type": "string", "nullable": true}, "source": {"type": "string", "nullable": true},
        "version": {"type": "integer", "nullable": true}, "sheet_hash": {"type": "string", "nullable": true},
        "detail": {"type": "string", "nullable": true}, "prev": {"type": "string"}, "hash": {"type": "string"}}}
    },
    "responses": {
      "Error": {"description": "A coded error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "paths": {
    "/sheets": {"post": {
      "summary": "Submit one sheet or an array of sheets (all stored or none). The source comes from the token's role.",
      "security": [{"bearer": []}],
      "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 128},
        "description": "Same key and same body: the same receipt again. Same key, different body: 409 H409."}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
        {"$ref": "#/components/schemas/Sheet"}, {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"$ref": "#/components/schemas/Sheet"}}]}}}},
      "responses": {
        "201": {"description": "Stored durably", "content": {"application/json": {"schema": {"oneOf": [
          {"$ref": "#/components/schemas/Receipt"},
          {"type": "object", "properties": {"receipts": {"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}}}}]}}}},
        "200": {"description": "Replay of an earlier request with the same Idempotency-Key"},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "415": {"$ref": "#/components/responses/Error"},
        "422": {"$ref": "#/components/responses/Error"}, "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/results": {"get": {
      "summary": "Results in the tally.results/1 schema (docs/results-json.md), from the official sheets.",
      "parameters": [
        {"name": "level", "in": "query", "schema": {"type": "string"}},
        {"name": "area", "in": "query", "schema": {"type": "string"}, "description": "Path such as North/A"},
        {"name": "round", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 255}}],
      "responses": {"200": {"description": "tally.results/1 document"}, "400": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/progress": {"get": {"summary": "Stations counted per round, sheet versions, conflicts, and the journal head (journal_seq, journal_head) to publish as an anchor.", "responses": {"200": {"description": "progress"}}}},
    "/stations/{id}": {"get": {"summary": "Every version of every source of one station, and its conflicts.",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "station"}, "404": {"$ref": "#/components/responses/Error"}, "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/events": {"get": {"summary": "Server-sent events: one 'change' event per stored sheet version, its id the journal seq. Resume with Last-Event-ID (or from=SEQ): what was missed comes from the journal first.",
      "parameters": [{"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "integer", "minimum": 0}},
        {"name": "from", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "maximum": 9223372036854775807}}],
      "responses": {"200": {"description": "text/event-stream"}, "400": {"$ref": "#/components/responses/Error"}, "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/journal": {"get": {"summary": "Journal entries from seq on (hash-chained).",
      "parameters": [{"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 9223372036854775807, "default": 1}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 1000}}],
      "responses": {"200": {"description": "entries", "content": {"application/json": {"schema": {"type": "object", "properties": {
        "entries": {"type": "array", "items": {"$ref": "#/components/schemas/JournalEntry"}}}}}}}, "400": {"$ref": "#/components/responses/Error"},
        "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI 3"}}}},
    "/users": {"post": {"summary": "Add a user (admin). The token is shown once.", "security": [{"bearer": []}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["role"], "properties": {
        "role": {"type": "string", "enum": ["admin", "official", "observer"]},
        "stations": {"type": "array", "items": {"type": "string"}, "description": "Observer's stations; \"*\" = all"}}}}}},
      "responses": {"201": {"description": "user_id, role, stations, token"}, "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "415": {"$ref": "#/components/responses/Error"},
        "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/users/{id}": {"delete": {"summary": "Revoke a user's token (admin).", "security": [{"bearer": []}],
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "responses": {"200": {"description": "revoked"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}}
  }
}"##;
