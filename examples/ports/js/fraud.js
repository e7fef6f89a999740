'use strict';
// Fraud checks of a punch (docs/protocol.md section 20.7): the haversine distance in integer
// fixed point with BigInt (every step as the spec spells it, so the metres match to the unit),
// CIDR allow-lists for IPv4 and IPv6, and the allow / flag / deny verdict.

const SCALE = 10n ** 20n;
const PI = 314159265358979323846n;
const R = 6371000n;
const abs = (x) => (x < 0n ? -x : x);

function isqrt(n) {
  if (n < 0n) throw new Error('isqrt of a negative number');
  if (n === 0n) return 0n;
  let x = n;
  let y = (x + 1n) / 2n;
  while (y < x) { x = y; y = (x + n / x) / 2n; }
  return x;
}

function sinFixed(x) {
  const x2 = (x * x) / SCALE;
  let term = x;
  let total = x;
  for (let k = 1n; term !== 0n; k += 1n) {
    term = term * x2 / SCALE / ((2n * k) * (2n * k + 1n));
    total = k % 2n ? total - term : total + term;
  }
  return total;
}

function asinFixed(s) {
  if (2n * s > SCALE) return PI / 2n - 2n * asinFixed(isqrt((SCALE - s) / 2n * SCALE));
  const s2 = (s * s) / SCALE;
  let p = s;
  let total = s;
  for (let k = 1n; p !== 0n; k += 1n) {
    p = p * s2 / SCALE * (2n * k - 1n) / (2n * k);
    total += p / (2n * k + 1n);
  }
  return total;
}

function distanceM(a, b) {
  const [alat, alon, blat, blon] = [a.lat_e6, a.lon_e6, b.lat_e6, b.lon_e6].map(BigInt);
  const dlat = abs(alat - blat);
  let dlon = abs(alon - blon);
  if (dlon > 180000000n) dlon = 360000000n - dlon;
  const sdlat = sinFixed(dlat * PI / 360000000n);
  const sdlon = sinFixed(dlon * PI / 360000000n);
  const cosA = sinFixed((90000000n - abs(alat)) * PI / 180000000n);
  const cosB = sinFixed((90000000n - abs(blat)) * PI / 180000000n);
  let h = sdlat * sdlat / SCALE + cosA * cosB / SCALE * (sdlon * sdlon / SCALE) / SCALE;
  if (h > SCALE) h = SCALE;
  return Number(2n * R * asinFixed(isqrt(h * SCALE)) / SCALE);
}

// ------------------------------------------------------------------------- addresses

function parseV4(text) {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    // decimal, 0..255, no leading zeros (as Python's ipaddress)
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null;
    value = value * 256n + BigInt(part);
  }
  return value;
}

function parseV6(text) {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return null;
  let groups = [];
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parseHalf = (half) => {
    if (half === '') return [];
    const out = [];
    const pieces = half.split(':');
    for (let i = 0; i < pieces.length; i += 1) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseV4(piece);
        if (v4 === null) return null;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        out.push(parseInt(piece, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = parseHalf(halves[0]);
  if (head === null) return null;
  if (halves.length === 2) {
    const tail = parseHalf(halves[1]);
    if (tail === null || head.length + tail.length > 7) return null;
    groups = [...head, ...Array(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    if (head.length !== 8) return null;
    groups = head;
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

// {version, value} or null
function parseAddress(text) {
  if (typeof text !== 'string') return null;
  const v4 = parseV4(text);
  if (v4 !== null) return { version: 4, value: v4 };
  const v6 = parseV6(text);
  if (v6 !== null) return { version: 6, value: v6 };
  return null;
}

function parseNetwork(text) {
  const [addr, prefix, extra] = text.trim().split('/');
  if (extra !== undefined) throw new Error(`${text} is not a CIDR block`);
  const parsed = parseAddress(addr);
  if (parsed === null) throw new Error(`${text} is not a CIDR block`);
  const bits = parsed.version === 4 ? 32 : 128;
  let length = bits;
  if (prefix !== undefined) {
    if (!/^[0-9]{1,3}$/.test(prefix) || Number(prefix) > bits) throw new Error(`${text} is not a CIDR block`);
    length = Number(prefix);
  }
  const hostBits = BigInt(bits - length);
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << hostBits) - 1n);
  if ((parsed.value & ~mask) !== 0n) throw new Error(`${text} has host bits set`);
  return { version: parsed.version, value: parsed.value, mask };
}

function addressAllowed(address, networks) {
  let parsed = parseAddress(address);
  if (parsed === null) return false;
  if (parsed.version === 6 && (parsed.value >> 32n) === 0xffffn) {
    parsed = { version: 4, value: parsed.value & 0xffffffffn }; // ::ffff:a.b.c.d
  }
  return networks.some((n) => n.version === parsed.version && (parsed.value & n.mask) === n.value);
}

// ----------------------------------------------------------------------------- verdict

function judge(policy, location, address, offline) {
  const geofence = policy.geofence ?? 'allow';
  const network = policy.network ?? 'allow';
  const radius = policy.radius_m ?? 150;
  const networks = (policy.ip_allow ?? []).map(parseNetwork);
  const distance = policy.venue == null || location == null ? null : distanceM(location, policy.venue);
  const checks = [];
  const failures = [];
  if (geofence !== 'allow') {
    if (location == null) failures.push(['no-location', geofence]);
    else if (distance !== null && distance > radius) failures.push(['outside-geofence', geofence]);
  }
  if (network !== 'allow') {
    if (offline) checks.push('network-unchecked');
    else if (!addressAllowed(address, networks)) failures.push(['outside-network', network]);
  }
  let refused = null;
  for (const [flag, rule] of failures) {
    if (rule === 'deny' && refused === null) refused = flag;
    checks.push(flag);
  }
  checks.sort();
  return { checks, distance_m: distance, refused };
}

module.exports = { addressAllowed, asinFixed, distanceM, isqrt, judge, parseNetwork, sinFixed };
