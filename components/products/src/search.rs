//! What a catalog search asks for: the query string of `GET /api/products`,
//! checked and normalised.
use std::collections::HashMap;

use shop_shared::api::ApiError;

use crate::validation::Checker;

const MAX_QUERY_CHARS: usize = 200;
const DEFAULT_PER_PAGE: i64 = 20;
const MAX_PER_PAGE: i64 = 100;
/// Deep pages are costly to skip to and nobody reads them.
const MAX_PAGE: i64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Best text match first; by name when there is no text to match.
    Relevance,
    /// Cheapest first.
    Price,
    /// Dearest first.
    PriceDescending,
    Name,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// The lower-cased words of `q`: a product matches if each is in its
    /// name or description.
    pub words: Vec<String>,
    /// All of `q`, lower-cased: a name starting with it ranks highest.
    pub phrase: Option<String>,
    pub category: Option<String>,
    pub min_price_cents: Option<i64>,
    pub max_price_cents: Option<i64>,
    /// `sku=A,B`: only these products (how orders prices a cart in one call).
    pub skus: Vec<String>,
    pub sort: Sort,
    pub page: i64,
    pub per_page: i64,
}

impl SearchQuery {
    /// Parses a query string. Empty parameters (`q=`) count as absent and
    /// unknown ones are ignored; anything else that is wrong is a 400
    /// listing each bad parameter.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(key, value)| (key.into_owned(), value.trim().to_string()))
            .collect();
        let mut check = Checker::new();
        let mut integer = |name: &str, min: i64, max: i64| -> Option<i64> {
            let text = params.get(name)?;
            match text.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                Ok(_) => {
                    check.fail(name, format!("must be between {min} and {max}"));
                    None
                }
                Err(_) => {
                    check.fail(name, "must be an integer");
                    None
                }
            }
        };
        let min_price_cents = integer("min_price_cents", 0, i64::MAX);
        let max_price_cents = integer("max_price_cents", 0, i64::MAX);
        let page = integer("page", 1, MAX_PAGE).unwrap_or(1);
        let per_page = integer("per_page", 1, MAX_PER_PAGE).unwrap_or(DEFAULT_PER_PAGE);
        if let (Some(min), Some(max)) = (min_price_cents, max_price_cents)
            && min > max
        {
            check.fail("min_price_cents", "must not be more than max_price_cents");
        }
        let sort = match params.get("sort").map(String::as_str) {
            None | Some("relevance") => Sort::Relevance,
            Some("price") => Sort::Price,
            Some("-price") => Sort::PriceDescending,
            Some("name") => Sort::Name,
            Some(_) => {
                check.fail("sort", "must be one of relevance, price, -price, name");
                Sort::Relevance
            }
        };
        let mut skus: Vec<String> = Vec::new();
        for sku in params.get("sku").iter().flat_map(|list| list.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            if !skus.iter().any(|s| s == sku) {
                skus.push(sku.to_string());
            }
        }
        if skus.len() as i64 > MAX_PER_PAGE {
            check.fail("sku", format!("must list at most {MAX_PER_PAGE} SKUs"));
        }
        let phrase = params.get("q").map(|q| q.to_lowercase());
        if phrase.as_ref().is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
            check.fail("q", format!("must be at most {MAX_QUERY_CHARS} characters"));
        }
        check.finish()?;
        let mut words: Vec<String> = Vec::new();
        for word in phrase.iter().flat_map(|q| q.split_whitespace()) {
            if !words.iter().any(|w| w == word) {
                words.push(word.to_string());
            }
        }
        Ok(Self {
            words,
            phrase,
            category: params.get("category").cloned(),
            min_price_cents,
            max_price_cents,
            skus,
            sort,
            page,
            per_page,
        })
    }

    /// How many matching products come before this page.
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let q = SearchQuery::parse("").unwrap();
        assert_eq!((q.sort, q.page, q.per_page, q.offset()), (Sort::Relevance, 1, 20, 0));
        assert!(q.words.is_empty() && q.phrase.is_none() && q.category.is_none() && q.skus.is_empty());
    }

    #[test]
    fn skus_are_a_comma_separated_list() {
        let q = SearchQuery::parse("sku=A-1,%20B-2,,A-1").unwrap();
        assert_eq!(q.skus, ["A-1", "B-2"]);
        let many = (0..=MAX_PER_PAGE).map(|i| format!("S{i}")).collect::<Vec<_>>().join(",");
        let error = SearchQuery::parse(&format!("sku={many}")).unwrap_err();
        assert_eq!(error.fields[0].field, "sku");
    }

    #[test]
    fn words_are_lower_cased_and_deduplicated() {
        let q = SearchQuery::parse("q=Coffee+GRINDER%20coffee&category=home-kitchen&sort=-price&page=3&per_page=5&x=1")
            .unwrap();
        assert_eq!(q.words, ["coffee", "grinder"]);
        assert_eq!(q.phrase.as_deref(), Some("coffee grinder coffee"));
        assert_eq!(q.category.as_deref(), Some("home-kitchen"));
        assert_eq!((q.sort, q.offset()), (Sort::PriceDescending, 10));
    }

    #[test]
    fn empty_parameters_are_absent() {
        let q = SearchQuery::parse("q=&category=&min_price_cents=&sort=").unwrap();
        assert_eq!(q, SearchQuery::parse("").unwrap());
    }

    #[test]
    fn every_bad_parameter_is_reported() {
        let error =
            SearchQuery::parse("min_price_cents=9&max_price_cents=1&page=0&per_page=abc&sort=cheap").unwrap_err();
        let fields: Vec<String> = error.fields.into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["page", "per_page", "min_price_cents", "sort"]);
    }
}
