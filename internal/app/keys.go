package app

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNoKey means neither NAME nor NAME_FILE is set (LoadKey); the caller says what the key is for.
var ErrNoKey = errors.New("no key configured")

// LoadKey reads a service's secret key of size bytes from the environment: NAME (its base64), or the file
// named by NAME_FILE, which is created (mode 0600, a random key) when it does not exist yet — every instance of
// the service must be given the same one. A file others may read is refused.
func LoadKey(getenv func(string) string, name string, size int) ([]byte, error) {
	value, file := getenv(name), getenv(name+"_FILE")
	switch {
	case value != "" && file != "":
		return nil, fmt.Errorf("set %s or %s_FILE, not both", name, name)
	case value != "":
		return decodeKey(name, value, size)
	case file == "":
		return nil, fmt.Errorf("%w: set %s_FILE (a file with mode 0600; created if missing) or %s (base64 of %d random bytes)",
			ErrNoKey, name, name, size)
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, size)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create %s_FILE: %w", name, err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("write %s_FILE: %w", name, werr)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s_FILE: %w", name, err)
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s_FILE %s is readable by others (mode %04o); chmod 600 it", name, file, st.Mode().Perm())
	}
	return decodeKey(name+"_FILE "+file, strings.TrimSpace(string(b)), size)
}

func decodeKey(what, v string, size int) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(key) != size {
		return nil, fmt.Errorf("%s: want the base64 encoding of %d random bytes (e.g. head -c%d /dev/urandom | base64)", what, size, size)
	}
	return key, nil
}
