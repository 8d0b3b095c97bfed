module github.com/tenant-vault/tenant-vault/clients/go

go 1.19
