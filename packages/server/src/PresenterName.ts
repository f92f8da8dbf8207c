import { z } from 'zod';
import { displayNameSchema, parseWith, type TokenClaims } from '@mcu/control';

const nameQuery = z.object({ name: displayNameSchema });

/**
 * The display name a WHIP presenter joins with (the console's participant list, its label in the
 * composite): the token's `name` claim when it has one, since a producer who issued a named token
 * chose the name; else `?name=` on the WHIP URL (the publish page asks for it, and OBS can carry it
 * in its Server URL); else none. A bad `?name=` is a 400 naming the field, not a silent drop.
 */
export function presenterName(claims: TokenClaims, query: URLSearchParams): string | undefined {
  if (claims.name !== undefined) return claims.name;
  const asked = query.get('name');
  if (asked === null) return undefined;
  return parseWith(nameQuery, { name: asked }, 'query').name;
}
