package main

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type authUnderTest struct {
	*testkit.Service
	dsn string
	db  *sql.DB
}

// startAuth runs auth in-process on a fresh database, registered in the package's Consul agent.
func startAuth(t *testing.T, env map[string]string) *authUnderTest {
	t.Helper()
	dsn := env["DATABASE_URL"]
	if dsn == "" {
		dsn = testkit.NewDatabase(t)
	}
	consul := testkit.SharedConsul(t)
	full := testkit.AuthEnv()
	full["DATABASE_URL"], full["CONSUL_HTTP_ADDR"] = dsn, consul.HTTPAddr
	for k, v := range env {
		full[k] = v
	}
	svc := testkit.Run(t, "auth", run, full)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &authUnderTest{Service: svc, dsn: dsn, db: db}
}

func (a *authUnderTest) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := a.db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func register(t *testing.T, base, email, password, name string) user {
	t.Helper()
	r := testkit.Call(t, "POST", base+"/v1/users", testkit.JSON(t, map[string]string{"email": email, "password": password, "name": name}))
	if r.Status != http.StatusCreated {
		t.Fatalf("register %s: got %d %s; want 201", email, r.Status, r.Body)
	}
	var u user
	r.Decode(t, &u)
	return u
}

func login(t *testing.T, base, email, password string) sessionAnswer {
	t.Helper()
	r := testkit.Call(t, "POST", base+"/v1/sessions", testkit.JSON(t, map[string]string{"email": email, "password": password}))
	if r.Status != http.StatusCreated {
		t.Fatalf("login %s: got %d %s; want 201", email, r.Status, r.Body)
	}
	var s sessionAnswer
	r.Decode(t, &s)
	return s
}

func TestCreateUser(t *testing.T) {
	a := startAuth(t, nil)
	u := register(t, a.URL, "  Ada@Example.COM ", "correct horse battery", "Ada Lovelace")
	if u.Email != "ada@example.com" || u.Name != "Ada Lovelace" || !strings.HasPrefix(u.ID, "usr_") {
		t.Fatalf("created user: got %+v; want email normalised to ada@example.com, name kept, id usr_…", u)
	}
	before := a.count(t, "users")

	long := strings.Repeat("x", DefaultBodyLimitForTest+1)
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		code        string
		wantInMsg   string
	}{
		{"email taken, other case", `{"email":"ADA@example.com","password":"another password","name":"Imposter"}`, "", 409, "email_taken", "exists"},
		{"short password", `{"email":"bob@example.com","password":"short","name":"Bob"}`, "", 400, "invalid_request", "password"},
		{"password too long for bcrypt", `{"email":"bob@example.com","password":"` + strings.Repeat("p", 73) + `","name":"Bob"}`, "", 400, "invalid_request", "password"},
		{"bad email", `{"email":"not-an-email","password":"long enough pw","name":"Bob"}`, "", 400, "invalid_request", "email"},
		{"email without domain dot", `{"email":"bob@localhost","password":"long enough pw","name":"Bob"}`, "", 400, "invalid_request", "email"},
		{"missing name", `{"email":"bob@example.com","password":"long enough pw"}`, "", 400, "invalid_request", "name"},
		{"control character in name", `{"email":"bob@example.com","password":"long enough pw","name":"Bo\u0007b"}`, "", 400, "invalid_request", "name"},
		{"unknown field", `{"email":"bob@example.com","password":"long enough pw","name":"Bob","admin":true}`, "", 400, "invalid_request", `"admin"`},
		{"malformed JSON", `{"email":"bob@example.com",`, "", 400, "invalid_request", "malformed"},
		{"trailing data", `{"email":"bob@example.com","password":"long enough pw","name":"Bob"} {}`, "", 400, "invalid_request", "trailing"},
		{"wrong type", `{"email":42,"password":"long enough pw","name":"Bob"}`, "", 400, "invalid_request", `"email"`},
		{"not an object", `["bob@example.com"]`, "", 400, "invalid_request", "object"},
		{"empty body", ``, "application/json", 400, "invalid_request", "empty"},
		{"wrong content type", `{"email":"bob@example.com","password":"long enough pw","name":"Bob"}`, "text/plain", 415, "unsupported_media_type", "application/json"},
		{"no content type", `{"email":"bob@example.com","password":"long enough pw","name":"Bob"}`, "none", 415, "unsupported_media_type", "application/json"},
		{"body too large", `{"email":"bob@example.com","password":"long enough pw","name":"` + long + `"}`, "", 413, "body_too_large", "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			switch tc.contentType {
			case "":
			case "none":
				hdr = []string{"Content-Type", ""}
			default:
				hdr = []string{"Content-Type", tc.contentType}
			}
			r := testkit.Call(t, "POST", a.URL+"/v1/users", tc.body, hdr...)
			msg := testkit.WantError(t, r, tc.status, tc.code)
			if !strings.Contains(msg, tc.wantInMsg) {
				t.Fatalf("message: got %q; want it to mention %q", msg, tc.wantInMsg)
			}
		})
	}
	if after := a.count(t, "users"); after != before {
		t.Fatalf("users after bad requests: got %d; want %d (nothing stored)", after, before)
	}
	login(t, a.URL, "ada@example.com", "correct horse battery") // the first account is intact
}

// DefaultBodyLimitForTest is the 1 MiB default body limit.
const DefaultBodyLimitForTest = 1 << 20

func TestSessions(t *testing.T) {
	a := startAuth(t, nil)
	register(t, a.URL, "grace@example.com", "cobol forever!", "Grace Hopper")
	s := login(t, a.URL, "Grace@Example.com", "cobol forever!")
	if s.User.Email != "grace@example.com" || s.Token == "" {
		t.Fatalf("session: got %+v; want a token for grace@example.com", s)
	}
	exp, err := time.Parse(time.RFC3339, s.ExpiresAt)
	if err != nil || exp.Location() != time.UTC || time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Fatalf("expires_at: got %q; want RFC 3339 UTC about 1h ahead", s.ExpiresAt)
	}

	// Bad credentials: the same answer whether or not the email exists.
	wrongPw := testkit.Call(t, "POST", a.URL+"/v1/sessions", `{"email":"grace@example.com","password":"not her password"}`)
	unknown := testkit.Call(t, "POST", a.URL+"/v1/sessions", `{"email":"nobody@example.com","password":"not her password"}`)
	m1 := testkit.WantError(t, wrongPw, 401, "invalid_credentials")
	m2 := testkit.WantError(t, unknown, 401, "invalid_credentials")
	if m1 != m2 {
		t.Fatalf("bad-credential messages differ: got %q and %q; want the same", m1, m2)
	}
	testkit.WantError(t, testkit.Call(t, "POST", a.URL+"/v1/sessions", `{"email":"grace@example.com"}`), 400, "invalid_request")
	testkit.WantError(t, testkit.Call(t, "POST", a.URL+"/v1/sessions", `{"email":"grace@example.com","password":"x","otp":1}`), 400, "invalid_request")

	me := testkit.Call(t, "GET", a.URL+"/v1/users/me", "", "Authorization", "Bearer "+s.Token)
	var u user
	me.Decode(t, &u)
	if me.Status != 200 || u.Email != "grace@example.com" {
		t.Fatalf("me: got %d %s; want 200 grace", me.Status, me.Body)
	}

	expired := signWithStoredKey(t, a, u.ID, s, time.Now().Add(-2*time.Hour))
	foreign := signWithNewKey(t, a, u.ID)
	tokenTests := []struct {
		name   string
		header string
		code   string
	}{
		{"missing", "", "missing_token"},
		{"not bearer", "Basic Z3JhY2U6cHc=", "missing_token"},
		{"garbled", "Bearer not.a.token", "invalid_token"},
		{"tampered", "Bearer " + tamper(s.Token), "invalid_token"},
		{"signed by another key with our kid", "Bearer " + foreign, "invalid_token"},
		{"expired", "Bearer " + expired, "token_expired"},
	}
	for _, tc := range tokenTests {
		t.Run(tc.name, func(t *testing.T) {
			testkit.WantError(t, testkit.Call(t, "GET", a.URL+"/v1/users/me", "", "Authorization", tc.header), 401, tc.code)
		})
	}

	// The internal session check that other services' verifiers use.
	var claims jwt.Claims
	tok, _ := jwt.ParseSigned(s.Token, []jose.SignatureAlgorithm{jose.EdDSA})
	_ = tok.UnsafeClaimsWithoutVerification(&claims)
	if r := testkit.CallAs(t, "catalog", "GET", a.URL+"/internal/v1/sessions/"+claims.ID, ""); r.Status != 200 {
		t.Fatalf("session status before logout: got %d; want 200", r.Status)
	}

	// Logout revokes the token.
	if r := testkit.Call(t, "DELETE", a.URL+"/v1/sessions/current", "", "Authorization", "Bearer "+s.Token); r.Status != 204 {
		t.Fatalf("logout: got %d %s; want 204", r.Status, r.Body)
	}
	testkit.WantError(t, testkit.Call(t, "GET", a.URL+"/v1/users/me", "", "Authorization", "Bearer "+s.Token), 401, "token_revoked")
	testkit.WantError(t, testkit.Call(t, "DELETE", a.URL+"/v1/sessions/current", "", "Authorization", "Bearer "+s.Token), 401, "token_revoked")
	testkit.WantError(t, testkit.CallAs(t, "catalog", "GET", a.URL+"/internal/v1/sessions/"+claims.ID, ""), 404, "not_found")

	// Another session of the same user is unaffected.
	s2 := login(t, a.URL, "grace@example.com", "cobol forever!")
	if r := testkit.Call(t, "GET", a.URL+"/v1/users/me", "", "Authorization", "Bearer "+s2.Token); r.Status != 200 {
		t.Fatalf("second session: got %d; want 200", r.Status)
	}
}

func tamper(token string) string {
	parts := strings.Split(token, ".")
	// Change the subject in the payload but keep the signature.
	parts[1] = strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return r
	}, parts[1])
	if parts[1] == strings.Split(token, ".")[1] {
		parts[1] = "e30"
	}
	return strings.Join(parts, ".")
}

// testSealer opens seeds sealed with the tests' key-encryption key.
func testSealer(t *testing.T) *sealer {
	t.Helper()
	kek, err := app.LoadKey(func(k string) string { return testkit.AuthEnv()[k] }, "AUTH_KEY_ENCRYPTION_KEY", kekSize)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSealer(kek)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// issuerWith returns an issuer that signs with k alone.
func issuerWith(t *testing.T, k signingKey, ttl time.Duration) *issuer {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	kr := &keyRing{}
	kr.current.Store(&activeKey{signingKey: k, signer: signer})
	return newIssuer(kr, ttl)
}

// storedKey opens the newest signing key auth keeps (sealed) in its database.
func storedKey(t *testing.T, a *authUnderTest) signingKey {
	t.Helper()
	var (
		kid    string
		sealed []byte
	)
	if err := a.db.QueryRow(`SELECT kid, sealed_seed FROM signing_keys WHERE sealed_seed IS NOT NULL ORDER BY created_at DESC LIMIT 1`).Scan(&kid, &sealed); err != nil {
		t.Fatal(err)
	}
	seed, err := testSealer(t).open(kid, sealed)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signWithStoredKey signs a token with auth's own key (read from its database) for an existing session, so
// only the expiry is wrong.
func signWithStoredKey(t *testing.T, a *authUnderTest, userID string, s sessionAnswer, exp time.Time) string {
	t.Helper()
	var claims jwt.Claims
	tok, _ := jwt.ParseSigned(s.Token, []jose.SignatureAlgorithm{jose.EdDSA})
	_ = tok.UnsafeClaimsWithoutVerification(&claims)
	iss := issuerWith(t, storedKey(t, a), time.Hour)
	iss.now = func() time.Time { return exp.Add(-time.Hour) }
	raw, _, err := iss.issue(userID, claims.ID, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// signWithNewKey signs a well-formed token with a key auth never published, under auth's own kid.
func signWithNewKey(t *testing.T, a *authUnderTest, userID string) string {
	t.Helper()
	var kid string
	if err := a.db.QueryRow(`SELECT kid FROM signing_keys`).Scan(&kid); err != nil {
		t.Fatal(err)
	}
	k, err := newSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	k.kid = kid
	raw, _, err := issuerWith(t, k, time.Hour).issue(userID, "ses_forged", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestJWKSVerifiesTokens(t *testing.T) {
	a := startAuth(t, nil)
	register(t, a.URL, "linus@example.com", "penguins rule!", "Linus")
	s := login(t, a.URL, "linus@example.com", "penguins rule!")

	r := testkit.Call(t, "GET", a.URL+"/v1/jwks", "")
	var set jose.JSONWebKeySet
	r.Decode(t, &set)
	if len(set.Keys) != 1 || set.Keys[0].Algorithm != "EdDSA" || !set.Keys[0].IsPublic() {
		t.Fatalf("jwks: got %s; want one public EdDSA key", r.Body)
	}
	// An independent verifier built only from the published keys accepts the token.
	v := authn.NewVerifier(
		func(context.Context) (jose.JSONWebKeySet, error) { return set, nil },
		func(context.Context, string) (string, bool, error) { return s.User.ID, true, nil },
		authn.Options{},
	)
	c, err := v.Verify(context.Background(), s.Token)
	if err != nil || c.UserID != s.User.ID {
		t.Fatalf("verify with published keys: got %+v, %v; want user %s", c, err, s.User.ID)
	}
}

func TestSigningKeySurvivesRestart(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	first := startAuth(t, map[string]string{"DATABASE_URL": dsn})
	register(t, first.URL, "ken@example.com", "unix since 1969", "Ken")
	s := login(t, first.URL, "ken@example.com", "unix since 1969")
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second := startAuth(t, map[string]string{"DATABASE_URL": dsn})
	if r := testkit.Call(t, "GET", second.URL+"/v1/users/me", "", "Authorization", "Bearer "+s.Token); r.Status != 200 {
		t.Fatalf("token after restart: got %d %s; want 200 (the key is kept)", r.Status, r.Body)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	a := startAuth(t, nil)
	r := testkit.Call(t, "GET", a.OpsURL+"/health/ready", "")
	if r.Status != 200 || !strings.Contains(r.String(), `"database":{"status":"pass"}`) {
		t.Fatalf("ready: got %d %s; want 200 with the database check passing", r.Status, r.Body)
	}
	register(t, a.URL, "mary@example.com", "analytical engine", "Mary")
	testkit.Call(t, "POST", a.URL+"/v1/users", `{`)
	m := testkit.Call(t, "GET", a.OpsURL+"/metrics", "").String()
	for _, want := range []string{
		`shoplab_http_requests_total{code="201",route="POST /v1/users"} 1`,
		`shoplab_http_requests_total{code="400",route="POST /v1/users"} 1`,
		`shoplab_http_request_duration_seconds_bucket{route="POST /v1/users"`,
		`go_sql_open_connections{db_name="auth"}`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics: want a line with %s", want)
		}
	}
	// The request id a client sends comes back.
	r = testkit.Call(t, "GET", a.URL+"/v1/jwks", "", "X-Request-ID", "trace-me-123")
	if r.Header.Get("X-Request-ID") != "trace-me-123" {
		t.Fatalf("X-Request-ID: got %q; want the client's", r.Header.Get("X-Request-ID"))
	}
}

// TestInternalRoutesNameTheirCallers: auth's session checks and revocation feed answer the services that verify
// tokens alone; the front, which calls auth's public routes, is refused them (issue 28 §5).
func TestInternalRoutesNameTheirCallers(t *testing.T) {
	a := startAuth(t, nil)
	testkit.WantInternalCallers(t, "auth", a.URL, "GET /internal/v1/sessions/ses_1", "GET /internal/v1/revocations")
}
