"""The domain core of the write side: users, products and orders with their rules, and no I/O.

Each aggregate's state is the snapshot its events carry (`shared.events`); each rule is a method that checks
the command against that state, moves it to its next version and keeps the events the change causes (returning
them too). The handlers load the aggregates (rows locked), ask them to decide, and save them: the save takes the
rows and the pending events together, so no change is stored without its event. Every rule here can be shown
without a database (tests/unit/test_order_rules.py).

Times are aware UTC datetimes, given by the caller: the rules never read a clock.
"""
