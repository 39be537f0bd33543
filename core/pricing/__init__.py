"""Price catalog and call pricing (money in integer picodollars, see core.types).

load_catalog()              data/prices.csv, loaded once per process
catalog.lookup(model, at, prompt_tokens) -> PriceRow   (raises UnpricedModel)
price(usage, row, batch=)   -> Cost, each token class charged once at its own rate
cost_of(catalog, model, usage) -> Cost(unpriced=True) for unknown models
import_litellm(path)        -> (rows, problems) from LiteLLM's price JSON
"""

from core.pricing.catalog import Catalog, default_catalog_path, load_catalog
from core.pricing.cost import cost_of, max_cost, price
from core.pricing.csvfile import COLUMNS, read_prices_csv
from core.pricing.litellm import Change, Problem, diff_catalogs, import_litellm, rows_from_litellm
from core.pricing.rows import PriceRow, parse_usd_per_mtok, usd_per_mtok

__all__ = [
    "COLUMNS",
    "Catalog",
    "Change",
    "PriceRow",
    "Problem",
    "cost_of",
    "default_catalog_path",
    "diff_catalogs",
    "import_litellm",
    "load_catalog",
    "max_cost",
    "parse_usd_per_mtok",
    "price",
    "read_prices_csv",
    "rows_from_litellm",
    "usd_per_mtok",
]
