package tenantvault

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an Error.
type Kind int

const (
	KindNotFound        Kind = iota + 1 // 404
	KindForbidden                       // 403
	KindUnauthenticated                 // 401
	KindConflict                        // 409 (check-and-set)
	KindRateLimited                     // 429; Error.RetryAfter holds Retry-After
	KindUnavailable                     // unreachable, timed out, 502/503/504
	KindInvalidRequest                  // 400, 413, 415, or a bad option
	KindServerError                     // anything else (500 integrity_error, ...)
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "NotFound"
	case KindForbidden:
		return "Forbidden"
	case KindUnauthenticated:
		return "Unauthenticated"
	case KindConflict:
		return "Conflict"
	case KindRateLimited:
		return "RateLimited"
	case KindUnavailable:
		return "Unavailable"
	case KindInvalidRequest:
		return "InvalidRequest"
	default:
		return "ServerError"
	}
}

// Sentinels for errors.Is: errors.Is(err, tenantvault.ErrNotFound).
var (
	ErrNotFound        = errors.New("tenant-vault: not found")
	ErrForbidden       = errors.New("tenant-vault: forbidden")
	ErrUnauthenticated = errors.New("tenant-vault: unauthenticated")
	ErrConflict        = errors.New("tenant-vault: conflict")
	ErrRateLimited     = errors.New("tenant-vault: rate limited")
	ErrUnavailable     = errors.New("tenant-vault: unavailable")
	ErrInvalidRequest  = errors.New("tenant-vault: invalid request")
	ErrServerError     = errors.New("tenant-vault: server error")
)

// Error is every error the client returns. It never holds a secret value or a token.
type Error struct {
	Kind       Kind
	Status     int    // HTTP status, 0 when no answer came
	Code       string // the server's error code, e.g. "secret_not_found"
	Message    string
	Tenant     string
	Key        string
	RetryAfter time.Duration // KindRateLimited: the server's Retry-After (at least 1 s)
}

func (e *Error) Error() string {
	where := ""
	if e.Tenant != "" {
		where = ", " + e.Tenant
		if e.Key != "" {
			where += "/" + e.Key
		}
	}
	return fmt.Sprintf("tenant-vault: %s (%s%s)", e.Message, e.Code, where)
}

// Unwrap returns the sentinel of the error's kind.
func (e *Error) Unwrap() error {
	switch e.Kind {
	case KindNotFound:
		return ErrNotFound
	case KindForbidden:
		return ErrForbidden
	case KindUnauthenticated:
		return ErrUnauthenticated
	case KindConflict:
		return ErrConflict
	case KindRateLimited:
		return ErrRateLimited
	case KindUnavailable:
		return ErrUnavailable
	case KindInvalidRequest:
		return ErrInvalidRequest
	default:
		return ErrServerError
	}
}

// RetryAfter reports the delay a RateLimited error asks for.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.Kind == KindRateLimited {
		return e.RetryAfter, true
	}
	return 0, false
}

var statusOfCode = map[string]int{
	"secret_not_found":       404,
	"tenant_not_found":       404,
	"forbidden":              403,
	"insufficient_scope":     403,
	"unauthenticated":        401,
	"rate_limited":           429,
	"invalid_tenant":         400,
	"invalid_secret_key":     400,
	"dependency_error":       502,
	"dependency_unavailable": 503,
	"not_ready":              503,
}

func kindOfStatus(status int) Kind {
	switch status {
	case 404:
		return KindNotFound
	case 403:
		return KindForbidden
	case 401:
		return KindUnauthenticated
	case 409:
		return KindConflict
	case 429:
		return KindRateLimited
	case 502, 503, 504:
		return KindUnavailable
	case 400, 413, 415, 422:
		return KindInvalidRequest
	default:
		return KindServerError
	}
}
