package tenantvault_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	tenantvault "github.com/tenant-vault/tenant-vault/clients/go"
)

// One client per process; a lookup after the first is a map read until the secret changes.
func ExampleNew() {
	vault, err := tenantvault.New(os.Getenv("TENANT_VAULT_ADDR"), os.Getenv("TENANT_VAULT_TOKEN"),
		tenantvault.WithCacheTTL(60*time.Second), tenantvault.WithMaxStale(5*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer vault.Close()

	key, err := vault.GetSecret(context.Background(), "acme", "STRIPE_KEY")
	switch {
	case errors.Is(err, tenantvault.ErrNotFound):
		log.Print("acme has no Stripe key")
	case errors.Is(err, tenantvault.ErrRateLimited):
		d, _ := tenantvault.RetryAfter(err)
		log.Printf("slow down for %s", d)
	case err != nil:
		log.Print(err) // never holds the value or the token
	default:
		_ = key
	}
}
