/// The OpenAPI 3.1 description of the API, served at `/openapi.json`. A test checks that it lists
/// exactly the routes the router has, so it cannot drift from the code.
enum OpenAPIDocument {
    static let json = """
        {
          "openapi": "3.1.0",
          "info": { "title": "ArtPay", "version": "1.0.0",
            "description": "Real-time art auctions. Amounts are integer minor units of the auction's currency. Errors are application/problem+json with a stable `code`." },
          "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT (ES256, kid)" } },
            "schemas": {
              "Problem": { "type": "object", "required": ["type", "title", "status", "code", "detail"],
                "properties": { "type": { "type": "string" }, "title": { "type": "string" }, "status": { "type": "integer" },
                  "code": { "type": "string" }, "detail": { "type": "string" } }, "additionalProperties": { "type": "string" } },
              "User": { "type": "object", "required": ["id", "username", "roles"],
                "properties": { "id": { "type": "string" }, "username": { "type": "string" },
                  "roles": { "type": "array", "items": { "enum": ["bidder", "seller", "admin"] } } } },
              "Auction": { "type": "object",
                "required": ["id", "seq", "title", "sellerId", "currency", "price", "minimumNextBid", "bidCount", "opensAt", "endsAt", "status", "hasReserve", "reserveMet"],
                "properties": { "id": { "type": "string" }, "seq": { "type": "integer" }, "title": { "type": "string" },
                  "sellerId": { "type": "string" }, "saleId": { "type": "string" }, "currency": { "type": "string" },
                  "price": { "type": "integer" }, "minimumNextBid": { "type": "integer" }, "leaderId": { "type": "string" },
                  "bidCount": { "type": "integer" }, "opensAt": { "type": "string", "format": "date-time" },
                  "endsAt": { "type": "string", "format": "date-time" },
                  "status": { "enum": ["scheduled", "open", "ended", "sold", "unsold", "cancelled"] },
                  "hasReserve": { "type": "boolean" }, "reserveMet": { "type": "boolean" }, "buyNowPrice": { "type": "integer" },
                  "winnerId": { "type": "string" }, "unsoldReason": { "type": "string" } } },
              "Bid": { "type": "object", "required": ["bidId", "outcome", "replayed", "seq", "maximum", "priceAfter", "auction"],
                "properties": { "bidId": { "type": "string" }, "outcome": { "enum": ["leading", "outbid", "bought_now"] },
                  "replayed": { "type": "boolean" }, "seq": { "type": "integer" }, "maximum": { "type": "integer" },
                  "priceAfter": { "type": "integer" }, "auction": { "$ref": "#/components/schemas/Auction" } } }
            },
            "responses": {
              "Problem": { "description": "An error", "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } }
            },
            "parameters": {
              "auctionId": { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }
            }
          },
          "paths": {
            "/health/live": { "get": { "summary": "The process runs", "responses": { "200": { "description": "live" } } } },
            "/health/ready": { "get": { "summary": "Member of the cluster with a working store", "responses": { "200": { "description": "ready" }, "503": { "description": "not ready" } } } },
            "/metrics": { "get": { "summary": "Prometheus text exposition", "responses": { "200": { "description": "metrics", "content": { "text/plain": {} } } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } } },
            "/v1/cluster": { "get": { "summary": "This node's view of the cluster", "responses": { "200": { "description": "members, placement, counters" } } } },
            "/v1/users": { "post": { "summary": "Register", "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["username", "password"], "additionalProperties": false,
                "properties": { "username": { "type": "string" }, "password": { "type": "string", "minLength": 8 },
                  "roles": { "type": "array", "items": { "enum": ["bidder", "seller"] } } } } } } },
              "responses": { "201": { "description": "created", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/User" } } } },
                "400": { "$ref": "#/components/responses/Problem" }, "409": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/sessions": { "post": { "summary": "Log in", "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["username", "password"], "additionalProperties": false,
                "properties": { "username": { "type": "string" }, "password": { "type": "string" } } } } } },
              "responses": { "200": { "description": "a token", "content": { "application/json": { "schema": { "type": "object",
                "properties": { "token": { "type": "string" }, "tokenType": { "const": "Bearer" }, "expiresAt": { "type": "string", "format": "date-time" } } } } } },
                "401": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/me": { "get": { "summary": "Who the token says you are", "security": [{ "bearer": [] }],
              "responses": { "200": { "description": "you", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/User" } } } },
                "401": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/users/{id}/roles": { "put": { "summary": "Set a user's roles (admin)", "security": [{ "bearer": [] }],
              "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
              "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["roles"], "additionalProperties": false,
                "properties": { "roles": { "type": "array", "items": { "enum": ["bidder", "seller", "admin"] } } } } } } },
              "responses": { "200": { "description": "the user", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/User" } } } },
                "403": { "$ref": "#/components/responses/Problem" }, "404": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/auctions": { "post": { "summary": "Create an auction (seller, admin)", "security": [{ "bearer": [] }],
              "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                "required": ["title", "currency", "startingPrice", "closesAt"], "additionalProperties": false,
                "properties": { "id": { "type": "string" }, "title": { "type": "string" }, "currency": { "type": "string" },
                  "startingPrice": { "type": "integer" }, "reservePrice": { "type": "integer" }, "buyNowPrice": { "type": "integer" },
                  "opensAt": { "type": "string", "format": "date-time" }, "closesAt": { "type": "string", "format": "date-time" },
                  "extensionWindowSeconds": { "type": "integer" }, "saleId": { "type": "string" } } } } } },
              "responses": { "201": { "description": "created", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Auction" } } } },
                "403": { "$ref": "#/components/responses/Problem" }, "409": { "$ref": "#/components/responses/Problem" }, "422": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/auctions/{id}": { "get": { "summary": "An auction's durable state", "parameters": [{ "$ref": "#/components/parameters/auctionId" }],
              "responses": { "200": { "description": "the auction", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Auction" } } } },
                "404": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/auctions/{id}/bids": { "post": { "summary": "Bid (bidder); idempotent by bidId", "security": [{ "bearer": [] }],
              "parameters": [{ "$ref": "#/components/parameters/auctionId" }],
              "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                "required": ["bidId", "maximum", "currency"], "additionalProperties": false,
                "properties": { "bidId": { "type": "string" }, "maximum": { "type": "integer" }, "currency": { "type": "string" } } } } } },
              "responses": { "201": { "description": "accepted", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bid" } } } },
                "200": { "description": "accepted before (replayed)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bid" } } } },
                "409": { "$ref": "#/components/responses/Problem" }, "422": { "$ref": "#/components/responses/Problem" },
                "429": { "$ref": "#/components/responses/Problem" }, "503": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/auctions/{id}/buy-now": { "post": { "summary": "Buy at the buy-now price (bidder)", "security": [{ "bearer": [] }],
              "parameters": [{ "$ref": "#/components/parameters/auctionId" }],
              "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                "required": ["bidId", "price", "currency"], "additionalProperties": false,
                "properties": { "bidId": { "type": "string" }, "price": { "type": "integer" }, "currency": { "type": "string" } } } } } },
              "responses": { "201": { "description": "bought", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bid" } } } },
                "422": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/auctions/{id}/cancel": { "post": { "summary": "Cancel (admin)", "security": [{ "bearer": [] }],
              "parameters": [{ "$ref": "#/components/parameters/auctionId" }],
              "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["reason"],
                "additionalProperties": false, "properties": { "reason": { "type": "string" } } } } } },
              "responses": { "200": { "description": "cancelled", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Auction" } } } },
                "403": { "$ref": "#/components/responses/Problem" }, "422": { "$ref": "#/components/responses/Problem" } } } },
            "/v1/auctions/{id}/events": { "get": { "summary": "Live events (Server-Sent Events; id = seq)",
              "parameters": [{ "$ref": "#/components/parameters/auctionId" },
                { "name": "since", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                { "name": "Last-Event-ID", "in": "header", "schema": { "type": "integer" } }],
              "responses": { "200": { "description": "event stream", "content": { "text/event-stream": {} } } } } }
          }
        }
        """
}
