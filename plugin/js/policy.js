// keyhost's default policy, written in JavaScript.
//
// The same rules as keyhost's Rust default policy, behind the same WIT
// contract (wit/policy.wit, world `policy`, interface `validator`): state
// (disabled, leaked, expired), then the key-kind/service table, then the
// source-address allow-list, then scopes. It uses no npm packages, so the
// component holds nothing but this file.
//
// build.sh, beside this file, builds it into a component with
// componentize-js (build.mjs); keyhost's book has a page on JavaScript
// policies ("In JavaScript").
//
// componentize-js maps the contract to JavaScript thus: record fields are
// camelCase, enum cases are their WIT names as strings, an option is the
// value or undefined, s64 is a BigInt, a tuple is an array, the decision
// variant is `{ tag, val }`, and a thrown string is the `err` of a result.

// componentize-js 0.23's bindings decode every string passed in with one
// default `new TextDecoder()`, which drops a leading U+FEFF as a byte-order
// mark: the service "\uFEFFbilling" would arrive as "billing", and this
// policy would allow what the Rust one refuses. Such a decoder is made to
// keep the mark, so the policy sees the text keyhost sent. The bindings look
// `decode` up at each call, so patching the prototype here is enough; the
// default vectors with a leading U+FEFF fail if that ever changes.
{
  const decode = TextDecoder.prototype.decode;
  const keepingTheMark = new TextDecoder("utf-8", { ignoreBOM: true });
  TextDecoder.prototype.decode = function (input, options) {
    const dropsTheMark =
      this.encoding === "utf-8" && !this.ignoreBOM && !this.fatal && !options?.stream;
    return dropsTheMark ? decode.call(keepingTheMark, input) : decode.call(this, input, options);
  };
}

const CLASSIC_INFRASTRUCTURE = "classic-infrastructure";

let classicService = CLASSIC_INFRASTRUCTURE;

// Rust's str::trim strips Unicode White_Space. JavaScript's trim() differs
// (it strips U+FEFF and keeps U+0085), and StarlingMonkey's regular
// expressions know no \p{White_Space}, so the set is spelled out.
const SPACE = String.raw`[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]`;
const EDGE_SPACE = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");
const trim = (text) => text.replace(EDGE_SPACE, "");

/** Takes the settings; names this policy does not use are left for others. */
function configure(config) {
  let classic = CLASSIC_INFRASTRUCTURE;
  for (const [name, value] of config) {
    if (name === "classic_service") {
      if (trim(value) === "") {
        // A thrown string becomes the `err` of `result<_, string>`.
        throw "policy.config.classic_service must not be empty";
      }
      classic = value;
    }
  }
  classicService = classic;
}

/** Decides whether `key`, which belongs to `identity`, may make `request`. */
function validate(key, identity, request) {
  const deny =
    checkState(key, request.now) ??
    checkService(key, request.service) ??
    checkSourceIp(key.allowedIps, request.sourceIp) ??
    checkScope(key.scopes, identity.scopes, request.scope);
  return deny ? { tag: "deny", val: deny } : { tag: "allow", val: [] };
}

// The contract's `validator` interface, which the component exports.
export const validator = { configure, validate };

function checkState(key, now) {
  if (key.disabled) {
    return { code: "disabled", message: "the key is disabled" };
  }
  if (key.leaked) {
    return { code: "leaked", message: "the key was reported as leaked" };
  }
  // Both are BigInts (s64).
  if (key.expiresAt !== undefined && now >= key.expiresAt) {
    return { code: "expired", message: "the key has expired" };
  }
}

/** The key-kind table: which kind of key may reach which service. */
function checkService(key, service) {
  const wanted = service ?? "(no service)";
  let message;
  switch (key.kind) {
    case "user":
      return;
    case "service-id":
      if (service !== classicService) return;
      message = `service ID keys are not valid for ${classicService}`;
      break;
    case "classic-infrastructure":
      if (service === classicService) return;
      message = `classic infrastructure keys are valid only for ${classicService}, not ${wanted}`;
      break;
    case "service-specific":
      if (service !== undefined && service === key.service) return;
      message = `the key is bound to service ${key.service ?? "(none)"}, not ${wanted}`;
      break;
  }
  return { code: "wrong-service", message };
}

function checkSourceIp(allowed, sourceIp) {
  if (allowed.length === 0) return;
  if (sourceIp === undefined) {
    return {
      code: "ip-not-allowed",
      message: "the key is limited to some addresses and the request gave none",
    };
  }
  const address = parseAddress(trim(sourceIp));
  if (address === undefined) {
    return {
      code: "ip-not-allowed",
      // JSON quoting is close to Rust's {:?}.
      message: `the source address ${JSON.stringify(sourceIp)} is not an IP address`,
    };
  }
  if (allowed.some((entry) => cidrContains(entry, address))) return;
  return {
    code: "ip-not-allowed",
    message: `${formatAddress(address)} is outside the key's allowed addresses`,
  };
}

/** A scope is granted when the identity has it and the key lists it or no scopes. */
function checkScope(keyScopes, identityScopes, scope) {
  if (scope === undefined) return;
  if (identityScopes.includes(scope) && (keyScopes.length === 0 || keyScopes.includes(scope))) {
    return;
  }
  return { code: "insufficient-scope", message: `the key does not carry the scope ${scope}` };
}

// IP addresses and networks.
//
// An address is its bytes: 4 for IPv4, 16 for IPv6. The parser is a port of
// the two Rust parsers the rules use, which differ: std::net (for bare
// addresses) refuses IPv4 octets with leading zeros and needs `::` to stand
// for at least one group; ipnet (for CIDRs) keeps an older copy of it that
// allows both. Text that does not parse gives undefined.

/** Whether a CIDR, or a bare address, contains `address`. Bad entries match nothing. */
function cidrContains(entry, address) {
  const net = parseNet(entry) ?? hostNet(parseAddress(entry));
  return net !== undefined && net.bytes.length === address.length && samePrefix(net, address);
}

function hostNet(bytes) {
  return bytes && { bytes, prefix: bytes.length * 8 };
}

/** Whether the first `net.prefix` bits of `net.bytes` and `address` agree; host bits are ignored. */
function samePrefix(net, address) {
  for (let i = 0, bits = net.prefix; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((net.bytes[i] & mask) !== (address[i] & mask)) return false;
  }
  return true;
}

/** An address as std::net::IpAddr parses it. */
function parseAddress(text) {
  return parseWhole(text, false, (p) => p.ipv4() ?? p.ipv6());
}

/** A network as ipnet::IpNet parses it: an address, `/` and a prefix length. */
function parseNet(text) {
  return parseWhole(text, true, (p) => p.net(() => p.ipv4(), 2, 33) ?? p.net(() => p.ipv6(), 3, 129));
}

function parseWhole(text, lenient, read) {
  const parser = new Parser(text, lenient);
  const result = read(parser);
  return parser.done() ? result : undefined;
}

class Parser {
  #text;
  #pos = 0;
  #lenient;

  constructor(text, lenient) {
    this.#text = text;
    this.#lenient = lenient;
  }

  done() {
    return this.#pos === this.#text.length;
  }

  /** Runs `read`, and rewinds when it gives nothing. */
  #atomically(read) {
    const start = this.#pos;
    const result = read();
    if (result === undefined) this.#pos = start;
    return result;
  }

  #char(c) {
    if (this.#text[this.#pos] !== c) return false;
    this.#pos++;
    return true;
  }

  #digit(radix) {
    const char = this.#text[this.#pos];
    const value = char === undefined ? NaN : Number.parseInt(char, radix);
    if (Number.isNaN(value)) return undefined;
    this.#pos++;
    return value;
  }

  /** A number below `limit` of at most `maxDigits` digits. */
  #number(radix, maxDigits, limit, zeroPrefix) {
    return this.#atomically(() => {
      const leadingZero = this.#text[this.#pos] === "0";
      let value = 0;
      let digits = 0;
      for (let d; (d = this.#digit(radix)) !== undefined; ) {
        value = value * radix + d;
        if (++digits > maxDigits || value >= limit) return undefined;
      }
      if (digits === 0 || (leadingZero && digits > 1 && !zeroPrefix)) return undefined;
      return value;
    });
  }

  ipv4() {
    return this.#atomically(() => {
      const bytes = [];
      for (let i = 0; i < 4; i++) {
        if (i > 0 && !this.#char(".")) return undefined;
        // std refuses leading zeros, lest they be read as octal.
        const octet = this.#number(10, 3, 0x100, this.#lenient);
        if (octet === undefined) return undefined;
        bytes.push(octet);
      }
      return bytes;
    });
  }

  ipv6() {
    return this.#atomically(() => {
      const head = this.#groups(8);
      if (head.groups.length === 8) return toBytes(head.groups);
      // An embedded IPv4 address may only end the address.
      if (head.ipv4 || !this.#char(":") || !this.#char(":")) return undefined;
      const tail = this.#groups((this.#lenient ? 8 : 7) - head.groups.length);
      const zeros = new Array(8 - head.groups.length - tail.groups.length).fill(0);
      return toBytes([...head.groups, ...zeros, ...tail.groups]);
    });
  }

  /** Up to `limit` colon-separated 16-bit groups, the last two maybe as an IPv4 address. */
  #groups(limit) {
    const groups = [];
    const separated = (read) =>
      this.#atomically(() => (groups.length === 0 || this.#char(":") ? read() : undefined));
    while (groups.length < limit) {
      if (groups.length < limit - 1) {
        const ipv4 = separated(() => this.ipv4());
        if (ipv4 !== undefined) {
          groups.push((ipv4[0] << 8) | ipv4[1], (ipv4[2] << 8) | ipv4[3]);
          return { groups, ipv4: true };
        }
      }
      const group = separated(() => this.#number(16, 4, 0x10000, true));
      if (group === undefined) break;
      groups.push(group);
    }
    return { groups, ipv4: false };
  }

  net(readAddress, maxDigits, limit) {
    return this.#atomically(() => {
      const bytes = readAddress();
      if (bytes === undefined || !this.#char("/")) return undefined;
      const prefix = this.#number(10, maxDigits, limit, true);
      return prefix === undefined ? undefined : { bytes, prefix };
    });
  }
}

function toBytes(groups) {
  return groups.flatMap((group) => [group >> 8, group & 0xff]);
}

/** The address as Rust displays it: IPv6 in RFC 5952 form, IPv4-mapped as ::ffff:a.b.c.d. */
function formatAddress(bytes) {
  if (bytes.length === 4) return bytes.join(".");
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes.slice(12).join(".")}`;
  }
  // The first longest run of two or more zero groups becomes `::`.
  let start = 0;
  let length = 0;
  for (let i = 0, run = 0; i < 8; i++) {
    run = groups[i] === 0 ? run + 1 : 0;
    if (run > length) [start, length] = [i - run + 1, run];
  }
  const hex = (part) => part.map((g) => g.toString(16)).join(":");
  return length > 1
    ? `${hex(groups.slice(0, start))}::${hex(groups.slice(start + length))}`
    : hex(groups);
}
