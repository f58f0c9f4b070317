// repeatedKey (src/admin/server.ts): a field an admin request body gives twice is refused, not read as its
// last value (JSON.parse keeps the last). Only the top-level object's keys count; strings are stepped over
// whole, so quotes, braces and colons inside them count for nothing.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { repeatedKey } from '../../src/admin/server.js';

describe('repeatedKey', () => {
  it.each([
    ['{"to":"a","to":"b"}', 'to'],
    ['{ "mode" : "wait" ,\n "deadline_s": 5, "mode": "migrate" }', 'mode'],
    ['{"a":1,"b":2,"a":3,"b":4}', 'a'],
    ['{"t\\u006f":1,"to":2}', 'to'], // the same key written with an escape
  ])('%s: %s', (text, key) => {
    expect(repeatedKey(text)).toBe(key);
  });

  it.each([
    '{}',
    '{"to":"a","expect_version":"3"}',
    '{"a":{"x":1,"x":2}}', // a repeated key of a nested object is not the top level's
    '{"a":[{"b":1},{"b":2}],"b":3}',
    '{"a":"\\"a\\":","b":"}{[]:"}', // quotes, braces and colons inside strings
    '{"a":"x\\\\","b":"\\\\"}', // escaped backslashes before closing quotes
  ])('%s: none', (text) => {
    expect(repeatedKey(text)).toBeUndefined();
  });

  it('property: agrees with the keys of any flat object written with each key once, and finds one written twice', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.string(), (obj, extra) => {
        const text = JSON.stringify(obj);
        expect(repeatedKey(text)).toBeUndefined();
        const keys = Object.keys(obj);
        if (keys.length === 0) return;
        const twice = `${text.slice(0, -1)},${JSON.stringify(keys[0])}:${JSON.stringify(extra)}}`;
        expect(repeatedKey(twice)).toBe(keys[0]);
      }),
    );
  });
});
