package auth

import "errors"

// Token rejection reasons. Every error returned by [KeyRing.VerifyClientToken] and
// [KeyRing.VerifyServerToken] wraps exactly one of them; test with [errors.Is].
var (
	// ErrTokenMissing means no token was presented.
	ErrTokenMissing = errors.New("auth: token missing")
	// ErrTokenMalformed means the token is not a well-formed JWT, is too long, or carries a
	// claim of the wrong type (or lacks a required one, such as exp on a server token).
	ErrTokenMalformed = errors.New("auth: token malformed")
	// ErrTokenSignature means no access key verifies the token's signature.
	ErrTokenSignature = errors.New("auth: token signature invalid")
	// ErrTokenExpired means the token is past its exp, or before its nbf, beyond the
	// allowed clock skew.
	ErrTokenExpired = errors.New("auth: token expired or not yet valid")
	// ErrTokenAudience means the token's aud is missing or names another endpoint path.
	ErrTokenAudience = errors.New("auth: token audience mismatch")
	// ErrTokenAlgorithm means the token's alg is missing, "none", unknown, or not one of
	// HS256, HS384 and HS512.
	ErrTokenAlgorithm = errors.New("auth: token algorithm not allowed")
)

// Key and configuration errors.
var (
	// ErrNoKey means a KeyRing was requested without any access key.
	ErrNoKey = errors.New("auth: no access key")
	// ErrEmptyKey means an access key is empty or only white space.
	ErrEmptyKey = errors.New("auth: empty access key")
	// ErrConnectionString means a connection string could not be parsed.
	ErrConnectionString = errors.New("auth: invalid connection string")
)
