"""ffe.backtest."""
