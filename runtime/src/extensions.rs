//! Typed per-connection data.
//!
//! A map from type to one value of that type, like `http::Extensions`. It
//! allocates nothing until the first insert, so connections that keep no
//! data pay one pointer for it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;

type Map = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// One value per type, owned by a connection and dropped when it ends.
///
/// # Examples
///
/// ```
/// let mut ext = wharf::Extensions::new();
/// ext.insert(42u32);
/// assert_eq!(ext.get::<u32>(), Some(&42));
/// assert_eq!(ext.insert(7u32), Some(42));
/// assert_eq!(ext.remove::<u32>(), Some(7));
/// assert!(ext.is_empty());
/// ```
#[derive(Default)]
pub struct Extensions {
    map: Option<Box<Map>>,
}

impl Extensions {
    /// An empty map.
    ///
    /// # Examples
    ///
    /// ```
    /// let ext = wharf::Extensions::new();
    /// assert!(ext.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value`, returning the previous value of its type.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut ext = wharf::Extensions::new();
    /// assert_eq!(ext.insert("ann".to_string()), None);
    /// assert_eq!(ext.insert("bob".to_string()), Some("ann".to_string()));
    /// ```
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.map
            .get_or_insert_with(Box::default)
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// The value of type `T`, if one is stored.
    ///
    /// # Examples
    ///
    /// ```
    /// struct UserId(u64);
    ///
    /// let mut ext = wharf::Extensions::new();
    /// ext.insert(UserId(42));
    /// assert_eq!(ext.get::<UserId>().map(|u| u.0), Some(42));
    /// assert!(ext.get::<String>().is_none());
    /// ```
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.as_ref()?.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// The value of type `T`, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut ext = wharf::Extensions::new();
    /// ext.insert(0u32);
    /// *ext.get_mut::<u32>().unwrap() += 1;
    /// assert_eq!(ext.get::<u32>(), Some(&1));
    /// ```
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.map
            .as_mut()?
            .get_mut(&TypeId::of::<T>())?
            .downcast_mut()
    }

    /// Removes and returns the value of type `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut ext = wharf::Extensions::new();
    /// ext.insert(7u8);
    /// assert_eq!(ext.remove::<u8>(), Some(7));
    /// assert_eq!(ext.remove::<u8>(), None);
    /// ```
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.map
            .as_mut()?
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// Number of stored values.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut ext = wharf::Extensions::new();
    /// ext.insert(1u8);
    /// ext.insert(2u16);
    /// assert_eq!(ext.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// Whether nothing is stored.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(wharf::Extensions::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every value.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut ext = wharf::Extensions::new();
    /// ext.insert(1u8);
    /// ext.clear();
    /// assert!(ext.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.map = None;
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.len())
            .finish()
    }
}
