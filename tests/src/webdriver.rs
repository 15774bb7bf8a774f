//! A small W3C WebDriver client over `reqwest` (what the dashboard test needs of chromedriver:
//! navigate, find, click, type, read, execute, screenshot, the browser's console log).
use std::time::Duration;

use serde_json::{json, Value};

/// One browser session.
pub struct Session {
    http: reqwest::Client,
    base: String,
}

/// An element of the page (its WebDriver reference).
#[derive(Debug, Clone)]
pub struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Session {
    /// Opens a session on the driver at `driver` with these capabilities.
    pub async fn new(driver: &str, capabilities: Value) -> Result<Session, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let r: Value = http
            .post(format!("{driver}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": capabilities}}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let id = r["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {r}"))?;
        Ok(Session {
            http,
            base: format!("{driver}/session/{id}"),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match r["value"].get("error") {
            Some(e) => Err(format!("{e}: {}", r["value"]["message"])),
            None => Ok(r["value"].clone()),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Navigates.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.post("/url", json!({"url": url})).await.map(|_| ())
    }

    /// Every element matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, String> {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_string())))
            .collect())
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<Element, String> {
        self.find_all(css)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| format!("no element {css}"))
    }

    /// Its rendered text.
    pub async fn text(&self, e: &Element) -> Result<String, String> {
        let v = self.get(&format!("/element/{}/text", e.0)).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// An attribute.
    pub async fn attr(&self, e: &Element, name: &str) -> Result<Option<String>, String> {
        let v = self
            .get(&format!("/element/{}/attribute/{name}", e.0))
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// Whether it is shown.
    pub async fn displayed(&self, e: &Element) -> Result<bool, String> {
        Ok(self.get(&format!("/element/{}/displayed", e.0)).await? == Value::Bool(true))
    }

    /// Clicks it.
    pub async fn click(&self, e: &Element) -> Result<(), String> {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await
            .map(|_| ())
    }

    /// Types into it.
    pub async fn send_keys(&self, e: &Element, text: &str) -> Result<(), String> {
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await
            .map(|_| ())
    }

    /// Runs a script in the page; its return value.
    pub async fn execute(&self, script: &str) -> Result<Value, String> {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let v = self.get("/screenshot").await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    /// The browser's console entries since the last call (chromedriver's log endpoint; needs
    /// `goog:loggingPrefs`).
    pub async fn console(&self) -> Result<Vec<Value>, String> {
        let v = self.post("/se/log", json!({"type": "browser"})).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Ends the session.
    pub async fn close(&self) -> Result<(), String> {
        self.call(reqwest::Method::DELETE, "", None)
            .await
            .map(|_| ())
    }
}
