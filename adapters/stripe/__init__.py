"""Everything that knows Stripe's SDK and Stripe's payloads, in one place.

- `client`: the provider behind the purchase port (customers, intents, Checkout, refunds,
  products), built on `subscriptions` for the membership port.
- `errors`: Stripe's exceptions as PAY errors.
- `signature`: the `Stripe-Signature` check of a webhook body.
- `events`, `purchase_events`, `membership_events`: a verified event as the ledger
  command it stands for.

HTTP is not here: the webhook controller only verifies, calls and answers.
"""
