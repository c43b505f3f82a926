//! nginx in front of rotel with TLS and mTLS, and throwaway certificates (see delivery_tls.rs).
