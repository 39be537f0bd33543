"""Price catalog and call pricing (money in integer picodollars, see core.types).

load_catalog()              data/prices.csv, loaded once per process
catalog.lookup(model, at, prompt_tokens) -> PriceRow   (raises UnpricedModel)
price(usage, row, batch=)   -> Cost, each token class charged once at its own rate
cost_of(catalog, model, usage) -> Cost(unpriced=True) for unknown models
import_litellm(path)        -> (rows, problems) from LiteLLM's price JSON, keyed by provider
diff_catalogs(old, new)     -> [Change]: a model is compared only with its own provider's entry
plan_import(catalog, rows)  -> ImportPlan: updates of own-provider entries, additions, changes
rules                       -> per-provider batch/cache stacking and the price flags
"""

from core.pricing.catalog import Catalog, default_catalog_path, load_catalog
from core.pricing.cost import cost_of, max_cost, price, prompt_cache_saving
from core.pricing.csvfile import COLUMNS, read_prices_csv
from core.pricing.litellm import (
    Change,
    Problem,
    diff_catalogs,
    import_litellm,
    litellm_provider,
    rows_from_litellm,
)
from core.pricing.plan import ImportPlan, plan_import
from core.pricing.rows import PriceRow, Rate, parse_usd_per_mtok, usd_per_mtok
from core.pricing.rules import (
    BATCH_DISCOUNTS_CACHE,
    FLAG_BATCH_UNAVAILABLE,
    FLAG_OVER_CONTEXT,
    PRICE_FLAGS,
)

__all__ = [
    "BATCH_DISCOUNTS_CACHE",
    "COLUMNS",
    "Catalog",
    "Change",
    "FLAG_BATCH_UNAVAILABLE",
    "FLAG_OVER_CONTEXT",
    "ImportPlan",
    "PRICE_FLAGS",
    "PriceRow",
    "Problem",
    "Rate",
    "cost_of",
    "default_catalog_path",
    "diff_catalogs",
    "import_litellm",
    "litellm_provider",
    "load_catalog",
    "max_cost",
    "parse_usd_per_mtok",
    "plan_import",
    "price",
    "prompt_cache_saving",
    "read_prices_csv",
    "rows_from_litellm",
    "usd_per_mtok",
]
