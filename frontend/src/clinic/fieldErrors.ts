// Tying a form's error message to the fields it is about (WCAG 3.3.1): the fields in error get
// aria-invalid, and every field the message is about points to it with aria-describedby, so a
// screen reader reads the message with the field that then takes focus.

import { ApiError } from '../api.ts'

/** The ARIA attributes of a field: `describedBy` (the message's element id) while a message about
 * the field is shown, `invalid` when the field's own value is what is wrong. */
export function fieldErrorProps(
  describedBy: string | null,
  invalid: boolean,
): { 'aria-invalid': true | undefined; 'aria-describedby': string | undefined } {
  return { 'aria-invalid': invalid || undefined, 'aria-describedby': describedBy ?? undefined }
}

/** Whether a failed request refused what was typed (by default the server's 400, 409 or 422;
 * signing in adds 401, wrong credentials), rather than failing for another reason (session ended,
 * server not reachable, busy, broken): only then are the fields marked invalid. */
export function refusedInput(err: unknown, statuses: readonly number[] = [400, 409, 422]): boolean {
  return err instanceof ApiError && statuses.includes(err.status)
}

/** The sign-in fields in error: which is empty; or, when the server refused the credentials,
 * both (the password only when the user name is fixed, signing back in as the same user). */
export function loginInvalid(
  username: string,
  password: string,
  refused: boolean,
  usernameFixed: boolean,
): { username: boolean; password: boolean } {
  if (refused) return { username: !usernameFixed, password: true }
  return { username: !username.trim(), password: !password }
}
