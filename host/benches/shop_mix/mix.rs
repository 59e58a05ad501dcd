//! The request mix: what a shop's visitors do, in what proportion, and
//! which answers count as the shop doing its job.
use serde_json::Value;

/// One kind of request, with its share of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A catalog page: `GET /api/products?page=&per_page=20`, some with a
    /// category and a sort order.
    Browse,
    /// One product: `GET /api/products/{id}`.
    View,
    /// A text search: `GET /api/products?q=<word>`.
    Search,
    /// `POST /api/cart/items` one unit of a product.
    AddToCart,
    /// `POST /api/orders/checkout` with the simulated processor's
    /// succeeding card.
    Checkout,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Browse, Kind::View, Kind::Search, Kind::AddToCart, Kind::Checkout];

    /// Percent of the requests drawn.
    pub fn weight(self) -> u32 {
        match self {
            Kind::Browse => 60,
            Kind::View => 15,
            Kind::Search => 10,
            Kind::AddToCart => 10,
            Kind::Checkout => 5,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Browse => "browse catalog",
            Kind::View => "view product",
            Kind::Search => "search",
            Kind::AddToCart => "add to cart",
            Kind::Checkout => "checkout",
        }
    }

    /// A kind drawn by the weights.
    pub fn draw(rng: &mut fastrand::Rng) -> Kind {
        let mut n = rng.u32(0..100);
        for kind in Kind::ALL {
            if n < kind.weight() {
                return kind;
            }
            n -= kind.weight();
        }
        unreachable!("the weights add up to 100")
    }

    /// What an answer with `status` means for this kind.
    ///
    /// Reads must answer 200 and cart additions 200/201. A checkout with
    /// the succeeding card must confirm (201); 409 (a product sold out
    /// between adding and paying, the order cancelled and any charge
    /// refunded) is the shop behaving correctly under contention, so it is
    /// counted apart, not as an error (with the stock the benchmark sets, it
    /// does not happen). A 402 (declined good card), 202 (the saga could
    /// not finish in time) and everything else are errors.
    pub fn outcome(self, status: u16) -> Outcome {
        match (self, status) {
            (Kind::Browse | Kind::View | Kind::Search, 200) => Outcome::Ok,
            (Kind::AddToCart, 200 | 201) => Outcome::Ok,
            (Kind::Checkout, 201) => Outcome::Confirmed,
            (Kind::Checkout, 409) => Outcome::SoldOut,
            _ => Outcome::Error,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Confirmed,
    SoldOut,
    Error,
}

/// What the visitors pick from: the catalog as the shop lists it.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// `(id, sku)` of every product.
    pub products: Vec<(String, String)>,
    pub categories: Vec<String>,
    /// Words of the product names, for searches that find something.
    pub words: Vec<String>,
}

const SORTS: [&str; 4] = ["relevance", "price", "-price", "name"];

impl Catalog {
    /// From the items of `GET /api/products?per_page=100`.
    pub fn from_listing(items: &[Value]) -> Catalog {
        let text = |p: &Value, field: &str| p[field].as_str().unwrap_or_else(|| panic!("product without {field}: {p}")).to_string();
        let products: Vec<(String, String)> = items.iter().map(|p| (text(p, "id"), text(p, "sku"))).collect();
        let mut categories: Vec<String> = items.iter().map(|p| text(p, "category")).collect();
        categories.sort();
        categories.dedup();
        let mut words: Vec<String> = items
            .iter()
            .flat_map(|p| text(p, "name").split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect::<Vec<_>>())
            .filter(|w| w.len() >= 4)
            .collect();
        words.sort();
        words.dedup();
        assert!(!products.is_empty() && !words.is_empty(), "the catalog is empty");
        Catalog { products, categories, words }
    }

    /// The path of a catalog page: the first three pages of everything, or
    /// a category in one of its sort orders.
    pub fn browse_path(&self, rng: &mut fastrand::Rng) -> String {
        if rng.bool() {
            let pages = self.products.len().div_ceil(20).max(1);
            format!("/api/products?page={}&per_page=20", rng.usize(1..=pages.min(3)))
        } else {
            let category = &self.categories[rng.usize(..self.categories.len())];
            format!("/api/products?category={category}&sort={}", SORTS[rng.usize(..SORTS.len())])
        }
    }

    pub fn view_path(&self, rng: &mut fastrand::Rng) -> String {
        format!("/api/products/{}", self.products[rng.usize(..self.products.len())].0)
    }

    pub fn search_path(&self, rng: &mut fastrand::Rng) -> String {
        format!("/api/products?q={}&per_page=20", self.words[rng.usize(..self.words.len())])
    }

    pub fn sku(&self, rng: &mut fastrand::Rng) -> &str {
        &self.products[rng.usize(..self.products.len())].1
    }
}
