;; A policy component written by hand, for hostile cases a Rust policy
;; cannot express (several memories, chosen function names). It exports the
;; keyhost:policy world; `configure` takes any settings and `validate`
;; runs the body the test gives, then allows. The core module may call
;; `exit` from wasi:cli/exit. support::wat_policy fills the placeholders.
(component
  (import "wasi:cli/exit@0.2.0" (instance $exit
    (export "exit" (func (param "status" (result))))))
  (core func $exit (canon lower (func $exit "exit")))
  (core instance $wasi (export "exit" (func $exit)))

  (core module $m
    (import "wasi" "exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    EXTRA_MEMORIES
    (global $next (mut i32) (i32.const 1024))
    ;; A bump allocator in memory 0; keyhost's arguments are small.
    (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $at) (local.get $size)))
      (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.add (i32.shr_u (global.get $next) (i32.const 16)) (i32.const 1))))))
      (local.get $at))
    ;; result<_, string>::ok at address 16.
    (func (export "configure") (param i32 i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.const 16))
    ;; decision::allow with no info pairs at address 32.
    (func (export "validate") (param i32) (result i32)
      VALIDATE_BODY
      (i32.store8 (i32.const 32) (i32.const 0))
      (i32.store (i32.const 36) (i32.const 0))
      (i32.store (i32.const 40) (i32.const 0))
      (i32.const 32))
    FUNCTIONS
  )
  (core instance $policy (instantiate $m (with "wasi" (instance $wasi))))

  (type $key-kind' (enum "user" "service-id" "classic-infrastructure" "service-specific"))
  (export $key-kind "key-kind" (type $key-kind'))
  (type $identity-kind' (enum "user" "service-id"))
  (export $identity-kind "identity-kind" (type $identity-kind'))
  (type $identity' (record
    (field "iam-id" string) (field "kind" $identity-kind)
    (field "owner" (option string)) (field "scopes" (list string))))
  (export $identity "identity" (type $identity'))
  (type $key-record' (record
    (field "id" string) (field "name" string) (field "kind" $key-kind)
    (field "owner" string) (field "service" (option string))
    (field "scopes" (list string)) (field "allowed-ips" (list string))
    (field "created-at" s64) (field "expires-at" (option s64))
    (field "disabled" bool) (field "leaked" bool) (field "locked" bool)))
  (export $key-record "key-record" (type $key-record'))
  (type $request' (record
    (field "service" (option string)) (field "scope" (option string))
    (field "source-ip" (option string)) (field "method" (option string))
    (field "path" (option string)) (field "attributes" (list (tuple string string)))
    (field "now" s64)))
  (export $request "request" (type $request'))
  (type $deny-code' (enum "not-found" "malformed" "disabled" "expired" "leaked"
    "wrong-service" "insufficient-scope" "ip-not-allowed" "rate-limited"
    "policy-error" "denied"))
  (export $deny-code "deny-code" (type $deny-code'))
  (type $deny' (record (field "code" $deny-code) (field "message" string)))
  (export $deny "deny" (type $deny'))
  (type $decision' (variant (case "allow" (list (tuple string string))) (case "deny" $deny)))
  (export $decision "decision" (type $decision'))

  (func $configure (param "config" (list (tuple string string))) (result (result (error string)))
    (canon lift (core func $policy "configure") (memory (core memory $policy "memory"))
      (realloc (core func $policy "cabi_realloc"))))
  (export "configure" (func $configure))
  (func $validate (param "key" $key-record) (param "identity" $identity) (param "request" $request)
    (result $decision)
    (canon lift (core func $policy "validate") (memory (core memory $policy "memory"))
      (realloc (core func $policy "cabi_realloc"))))
  (export "validate" (func $validate))
)
